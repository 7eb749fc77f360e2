//! Confinement observed from inside real children started by `spawn()`,
//! and the seccomp program run on sample calls. Landlock and cgroup v2
//! need a kernel that has them: elsewhere those tests print a skip line
//! (and record it in `$QGA_TEST_SKIP_LOG`, as tests/common/skip.rs does).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::rc::Rc;

use super::*;
use crate::process::{wait_for, WaitStatus};
use crate::spawn::{spawn, Redirect, SpawnError, SpawnSpec, Stage};

/// Prints `SKIP qga-sys::<test>: why` and appends it to the skip log; the
/// test returns right after. Kernel features are not something CI can
/// provide on its host, so this is "n/a", never a failure.
pub(super) fn skip(why: &str) {
    let test = format!("qga-sys::{}", std::thread::current().name().unwrap_or("<unnamed>"));
    eprintln!("SKIP {test}: {why}");
    if let Some(log) = std::env::var_os("QGA_TEST_SKIP_LOG").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let line = format!("{test}\tn/a\t{why}\n");
        let f = std::fs::OpenOptions::new().create(true).append(true).open(log);
        let _ = f.and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

fn sh(script: &str, confine: Option<Confinement>, cgroup_procs: Option<RawFd>) -> SpawnSpec {
    SpawnSpec {
        argv0: None,
        path: c"/bin/sh".to_owned(),
        args: vec![c"-c".to_owned(), CString::new(script).unwrap()],
        env: Some(vec![c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()]),
        stdin: Redirect::Null,
        stdout: Redirect::Pipe,
        stderr: Redirect::ToStdout,
        cwd: None,
        credentials: None,
        tty: None,
        confine: confine.map(Rc::new),
        cgroup_procs,
    }
}

/// Runs `sh -c script` (stderr merged into stdout) to its end.
fn run(script: &str, confine: Option<Confinement>) -> Result<(String, WaitStatus), SpawnError> {
    let child = spawn(&sh(script, confine, None))?;
    let out = child.stdout.expect("a stdout pipe");
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match crate::fd::read(out.as_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(crate::Errno::EAGAIN) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Err(e) => panic!("reading the child's output: {e}"),
        }
    }
    let status = wait_for(child.pid).expect("wait for the child");
    Ok((String::from_utf8_lossy(&text).into_owned(), status))
}

fn run_ok(script: &str, confine: Confinement) -> String {
    let (out, status) = run(script, Some(confine)).expect("spawn");
    assert_eq!(status.exit_code(), Some(0), "`{script}` failed: {out}");
    out
}

/// Starts `sh -c script` in `cg` (for cgroup.rs's test); returns its pid.
pub(super) fn spawn_in_cgroup(cg: &cgroup::Cgroup, script: &str) -> libc::pid_t {
    let mut spec = sh(script, None, Some(cg.procs_fd()));
    spec.stdout = Redirect::Null;
    spawn(&spec).expect("spawn into the cgroup").pid
}

/// A cgroup2 directory where a test may create leaves, and the
/// controllers its children get: the cgroup2 root, as root (exempt from
/// "no internal processes"), with memory, pids and cpu enabled where the
/// hierarchy has them (a hybrid host's v2 tree has none: leaves still
/// join, count and kill).
pub(super) fn cgroup_parent() -> Option<(PathBuf, Vec<String>)> {
    let Some(mount) = cgroup::v2_mount() else {
        skip("no cgroup2 mounted (cgroup v1 only)");
        return None;
    };
    if crate::process::geteuid() != 0 {
        skip("needs root to create cgroups");
        return None;
    }
    let available = cgroup::available_controllers(&mount).unwrap_or_default();
    let wanted: Vec<&str> =
        ["memory", "pids", "cpu"].into_iter().filter(|c| available.iter().any(|a| a == c)).collect();
    if let Err(failed) = cgroup::enable_controllers(&mount, &wanted) {
        // The test goes on with the others (and says which limits it skips).
        eprintln!("cgroup2 at {}: cannot enable {failed:?}", mount.display());
    }
    let enabled = std::fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap_or_default();
    Some((mount, enabled.split_whitespace().map(str::to_string).collect()))
}

#[test]
fn rlimits_are_set_in_the_child() {
    let confine = Confinement {
        rlimits: vec![
            Rlimit { resource: RlimitResource::Nofile, soft: 77, hard: 99 },
            Rlimit { resource: RlimitResource::Cpu, soft: 7, hard: 9 },
            Rlimit { resource: RlimitResource::Core, soft: 0, hard: u64::MAX },
        ],
        ..Confinement::default()
    };
    let out = run_ok("ulimit -n; ulimit -Hn; ulimit -t; ulimit -c; ulimit -Hc", confine);
    assert_eq!(out, "77\n99\n7\n0\nunlimited\n");
}

#[test]
fn a_bad_rlimit_is_a_confine_failure() {
    // soft above hard: setrlimit's EINVAL, reported as the confine step.
    let confine = Confinement {
        rlimits: vec![Rlimit { resource: RlimitResource::Nofile, soft: 100, hard: 10 }],
        ..Confinement::default()
    };
    let e = run("true", Some(confine)).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Confine, crate::Errno::EINVAL));
}

#[test]
fn rlimit_names() {
    for r in [
        RlimitResource::Cpu,
        RlimitResource::As,
        RlimitResource::Nofile,
        RlimitResource::Nproc,
        RlimitResource::Fsize,
        RlimitResource::Core,
    ] {
        assert_eq!(RlimitResource::from_name(r.name()), Some(r));
    }
    assert_eq!(RlimitResource::from_name("rss"), None);
    assert_eq!(RlimitResource::from_name("NOFILE"), None);
}

#[test]
fn no_new_privs_only_when_asked() {
    let grep = "grep NoNewPrivs /proc/self/status";
    assert_eq!(run_ok(grep, Confinement { no_new_privs: true, ..Confinement::default() }), "NoNewPrivs:\t1\n");
    // The fork path without it, and the posix_spawn path.
    assert_eq!(run_ok(grep, Confinement::default()), "NoNewPrivs:\t0\n");
    let (out, _) = run(grep, None).unwrap();
    assert_eq!(out, "NoNewPrivs:\t0\n");
}

#[test]
fn joining_a_cgroup_that_cannot_be_written_is_reported() {
    // A read-only fd where cgroup.procs should be: the child's write fails
    // with EBADF and the spawn reports the confine step.
    let ro = crate::fd::open(c"/dev/null", libc::O_RDONLY, 0).unwrap();
    let e = spawn(&sh("true", None, Some(ro.as_raw_fd()))).unwrap_err();
    assert_eq!((e.stage, e.errno), (Stage::Confine, crate::Errno(libc::EBADF)));
}

#[test]
fn unknown_and_setup_syscalls_cannot_be_denied() {
    assert_eq!(
        SeccompFilter::deny(&["mount", "nosuchcall"]).unwrap_err(),
        ConfineError::UnknownSyscall("nosuchcall".into())
    );
    // What the child still does after the filter, and the filter itself.
    let needed = [
        "setgroups",
        "setgid",
        "setuid",
        "chdir",
        "dup2",
        "dup3",
        "execve",
        "execveat",
        "close_range",
        "fcntl",
        "write",
        "exit_group",
        "exit",
        "seccomp",
        "prctl",
        "landlock_restrict_self",
        "setrlimit",
        "rt_sigprocmask",
    ];
    for name in needed {
        assert!(super::seccomp::syscall_number(name).is_err(), "{name} must not be deniable");
    }
    assert_eq!(
        ConfineError::UnknownSyscall("nosuchcall".into()).to_string(),
        "unknown system call \u{201C}nosuchcall\u{201D}"
    );
}

#[test]
fn legacy_names_are_known_here_or_absent() {
    for name in super::seccomp::LEGACY_NAMES {
        let nr = super::seccomp::syscall_number(name).unwrap();
        assert_eq!(nr.is_some(), cfg!(target_arch = "x86_64"), "{name}");
    }
    for name in DANGEROUS_SYSCALLS {
        assert!(known_syscalls().any(|k| k == *name), "{name}");
    }
}

#[cfg(not(feature = "confine"))]
#[test]
fn without_the_feature_seccomp_and_landlock_say_so() {
    assert_eq!(SeccompFilter::deny(&["mount"]).unwrap_err(), ConfineError::NotBuilt("seccomp"));
    assert!(matches!(
        LandlockRuleset::build(&[], &[], LandlockMode::BestEffort),
        Ok(LandlockBuild::Unsupported { reason: "not built in" })
    ));
    assert_eq!(
        LandlockRuleset::build(&[], &[], LandlockMode::Required).unwrap_err(),
        ConfineError::NotBuilt("landlock")
    );
}

#[cfg(feature = "confine")]
mod with_crates {
    use super::*;
    use crate::confine::seccomp::x32_guard;

    /// `AUDIT_ARCH_*` of the build's architecture, and one that is not it.
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E;
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7;
    #[cfg(target_arch = "riscv64")]
    const ARCH: u32 = 0xC000_00F3;
    /// AUDIT_ARCH_I386: int 0x80 from a 64-bit process.
    const OTHER_ARCH: u32 = 0x4000_0003;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

    /// Classic BPF as the kernel runs a seccomp program, for the
    /// instructions seccompiler and the x32 guard emit (loads of nr and
    /// arch, JA, JEQ/JGE/JGT/JSET with a constant, RET with a constant).
    fn run_bpf(prog: &[libc::sock_filter], nr: u32, arch: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        for _ in 0..prog.len() {
            let i = prog[pc];
            let branch = |cond: bool| pc + 1 + usize::from(if cond { i.jt } else { i.jf });
            pc = match i.code {
                0x20 => {
                    a = match i.k {
                        0 => nr,
                        4 => arch,
                        k => panic!("load of seccomp_data offset {k}"),
                    };
                    pc + 1
                }
                0x06 => return i.k,
                0x05 => pc + 1 + i.k as usize,
                0x15 => branch(a == i.k),
                0x25 => branch(a > i.k),
                0x35 => branch(a >= i.k),
                0x45 => branch(a & i.k != 0),
                code => panic!("unexpected BPF code {code:#x} at {pc}"),
            };
            assert!(pc < prog.len(), "jump past the end");
        }
        panic!("no RET reached (backward jumps are impossible in BPF)");
    }

    fn nr(name: &str) -> u32 {
        super::super::seccomp::syscall_number(name).unwrap().unwrap() as u32
    }

    #[test]
    fn the_program_denies_the_list_and_nothing_else() {
        let filter = SeccompFilter::deny(DANGEROUS_SYSCALLS).unwrap();
        let prog = filter.program();
        for name in DANGEROUS_SYSCALLS {
            assert_eq!(run_bpf(prog, nr(name), ARCH), EPERM, "{name}");
        }
        for allowed in
            [libc::SYS_getpid, libc::SYS_read, libc::SYS_write, libc::SYS_execve, libc::SYS_setuid, libc::SYS_openat]
        {
            assert_eq!(run_bpf(prog, allowed as u32, ARCH), libc::SECCOMP_RET_ALLOW, "syscall {allowed}");
        }
        // Another architecture's calls (different numbers) never get through.
        assert_eq!(run_bpf(prog, libc::SYS_getpid as u32, OTHER_ARCH), libc::SECCOMP_RET_KILL_PROCESS);
        // An empty list allows everything (but still checks the arch).
        let empty = SeccompFilter::deny(&[]).unwrap();
        assert_eq!(run_bpf(empty.program(), nr("mount"), ARCH), libc::SECCOMP_RET_ALLOW);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_calls_are_refused() {
        let filter = SeccompFilter::deny(&["mount"]).unwrap();
        let key = |i: &libc::sock_filter| (i.code, i.jt, i.jf, i.k);
        assert!(filter.program()[..3].iter().map(key).eq(x32_guard().iter().map(key)));
        for n in [libc::SYS_getpid, libc::SYS_read, libc::SYS_mount, 0, 511] {
            assert_eq!(run_bpf(filter.program(), 0x4000_0000 | n as u32, ARCH), EPERM, "x32 syscall {n}");
            assert_eq!(
                run_bpf(&filter.program()[3..], 0x4000_0000 | n as u32, ARCH),
                libc::SECCOMP_RET_ALLOW,
                "unguarded {n}"
            );
        }
        assert_eq!(run_bpf(filter.program(), 0x3FFF_FFFF, ARCH), libc::SECCOMP_RET_ALLOW);
    }

    /// Forks; the child runs `f` (raw syscalls only: the test harness has
    /// threads) and exits with its result, which is returned.
    fn in_child(f: impl FnOnce() -> i32) -> i32 {
        // SAFETY: the child only makes raw syscalls on memory prepared before the fork, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = f();
            // SAFETY: ends the forked child without running the harness's code.
            unsafe { libc::_exit(code) }
        }
        wait_for(pid).unwrap().exit_code().expect("the child was killed")
    }

    fn errno() -> i32 {
        // SAFETY: reads the calling thread's errno slot.
        unsafe { *libc::__errno_location() }
    }

    /// The kernel runs the installed program: every dangerous call fails
    /// with EPERM (garbage arguments: EFAULT/EINVAL/EBADF if one got
    /// through), the x32 number of getpid too, getpid itself works.
    #[test]
    fn the_installed_filter_refuses_the_dangerous_calls() {
        let filter = SeccompFilter::deny(DANGEROUS_SYSCALLS).unwrap();
        let nrs: Vec<libc::c_long> = DANGEROUS_SYSCALLS.iter().map(|n| nr(n) as libc::c_long).collect();
        let code = in_child(|| {
            if set_no_new_privs_raw() != 0 || filter.install_raw() != 0 {
                return 100;
            }
            for (i, &n) in nrs.iter().enumerate() {
                // SAFETY: a denied call never runs; one let through fails on -1 arguments.
                let rc = unsafe { libc::syscall(n, -1, -1, -1, -1, -1, -1) };
                if rc != -1 || errno() != libc::EPERM {
                    return 1 + i as i32;
                }
            }
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: getpid's x32 number takes no arguments.
                let rc = unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) };
                if rc != -1 || errno() != libc::EPERM {
                    return 90;
                }
            }
            // SAFETY: getpid has no arguments.
            if unsafe { libc::syscall(libc::SYS_getpid) } <= 0 {
                return 91;
            }
            0
        });
        match code {
            0 => {}
            100 => panic!("could not install the filter"),
            90 => panic!("an x32 call got through"),
            91 => panic!("getpid was denied"),
            i => panic!("{} got through the filter", DANGEROUS_SYSCALLS[(i - 1) as usize]),
        }
    }

    /// Through spawn: `setarch` calls personality(2), which the filter
    /// denies; the same command works without it.
    #[test]
    fn a_spawned_child_sees_a_denied_call_fail() {
        let script = format!("setarch {} true 2>&1 && echo ran", std::env::consts::ARCH);
        let (plain, _) = run(&script, None).unwrap();
        if plain.contains("not found") {
            skip("no setarch (util-linux) on this machine");
            return;
        }
        assert_eq!(plain, "ran\n");
        let nnp = Confinement {
            no_new_privs: true,
            seccomp: Some(SeccompFilter::deny(&["personality"]).unwrap()),
            ..Confinement::default()
        };
        let (out, _) = run(&script, Some(nnp)).unwrap();
        assert!(out.contains("Operation not permitted") && !out.contains("ran"), "{out}");
    }

    /// Without no_new_privs the filter needs CAP_SYS_ADMIN: root (the agent)
    /// installs it; anybody else gets EACCES as a confine failure, and
    /// no_new_privs is not set behind the profile's back.
    #[test]
    fn a_filter_without_no_new_privs_needs_root() {
        let confine =
            Confinement { seccomp: Some(SeccompFilter::deny(&["personality"]).unwrap()), ..Confinement::default() };
        match run("grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status", Some(confine)) {
            Ok((out, _)) => {
                assert_eq!(crate::process::geteuid(), 0, "installed without NNP and without root");
                assert_eq!(out, "NoNewPrivs:\t0\nSeccomp:\t2\n");
            }
            Err(e) => {
                assert_ne!(crate::process::geteuid(), 0);
                assert_eq!((e.stage, e.errno), (Stage::Confine, crate::Errno(libc::EACCES)));
            }
        }
    }

    #[test]
    fn landlock_without_a_kernel_that_has_it() {
        if landlock_abi().is_some() {
            skip("this kernel has Landlock (the test is for kernels without it)");
            return;
        }
        assert!(matches!(
            LandlockRuleset::build(&[PathBuf::from("/usr")], &[], LandlockMode::BestEffort),
            Ok(LandlockBuild::Unsupported { reason: "kernel without Landlock" })
        ));
        assert!(matches!(LandlockRuleset::build(&[], &[], LandlockMode::Required), Err(ConfineError::Landlock(_))));
    }

    /// Reads, writes and execs as the ruleset allows; a write elsewhere
    /// fails with EACCES.
    #[test]
    fn landlock_confines_writes_to_the_read_write_paths() {
        let Some(abi) = landlock_abi() else {
            skip("no Landlock in this kernel (not built, or not in the lsm= list)");
            return;
        };
        let base = std::env::temp_dir().join(format!("qga-landlock-{}", std::process::id()));
        let (inside, outside) = (base.join("rw"), base.join("ro"));
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let system: Vec<PathBuf> =
            ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/proc", "/dev"].map(PathBuf::from).into();
        let missing = PathBuf::from("/nonexistent-qga-path");
        // Required: a missing path is an error naming it; best effort skips it.
        let e = LandlockRuleset::build(std::slice::from_ref(&missing), &[], LandlockMode::Required).unwrap_err();
        assert_eq!(e, ConfineError::Path(missing.clone(), crate::Errno::ENOENT));
        let required = LandlockRuleset::build(&system[..1], &[], LandlockMode::Required).unwrap();
        assert!(matches!(required, LandlockBuild::Enforced { abi: a, .. } if a == abi));
        let ro: Vec<PathBuf> = system.iter().cloned().chain([outside.clone(), missing]).collect();
        // A file as a read-write path: only the file rights apply to it.
        let rw = [inside.clone(), PathBuf::from("/dev/null")];
        let build = LandlockRuleset::build(&ro, &rw, LandlockMode::BestEffort).unwrap();
        let LandlockBuild::Enforced { ruleset, abi: got, partial } = build else { panic!("not enforced on ABI {abi}") };
        assert_eq!((got, ruleset.abi()), (abi, abi));
        eprintln!("landlock ABI {abi}, partial: {partial}");
        let script = format!(
            "echo a > {i}/ok && cat {i}/ok && ls {o} >/dev/null && echo listed; echo b > {o}/no || echo refused; echo c > /tmp/qga-ll-$$ || echo refused",
            i = inside.display(),
            o = outside.display()
        );
        let confine = Confinement { landlock: Some(ruleset), ..Confinement::default() };
        let (out, _) = run(&script, Some(confine)).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
        assert!(out.starts_with("a\nlisted\n"), "{out}");
        assert_eq!(out.matches("refused").count(), 2, "{out}");
        assert!(out.contains("Permission denied"), "{out}");
    }
}
