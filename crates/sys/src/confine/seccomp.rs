//! A profile's seccomp filter: a deny list of system call names, compiled
//! to classic BPF with rust-vmm's `seccompiler` (listed calls fail with
//! EPERM, everything else is allowed; another architecture than the
//! agent's own, e.g. i386 calls from a 64-bit process, kills the process),
//! installed in the forked child by one raw
//! `seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog)` (libseccomp's
//! `seccomp_load()` without the no_new_privs it sets by default).
//!
//! Names are looked up in [`SYSCALLS`], a table of the calls worth
//! denying (libc's numbers for the target architecture), not every call:
//! the setup the child still does after the filter (setgroups, setgid,
//! setuid, chdir, dup2/dup3, close_range, fcntl, execve, write,
//! exit_group) can therefore never be denied.

use super::ConfineError;

/// The "deny-dangerous" family: module loading, kexec, mounts and the new
/// mount API, ptrace and cross-process memory, bpf, perf, keyrings,
/// userfaultfd, swap.
pub const DANGEROUS_SYSCALLS: &[&str] = &[
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "add_key",
    "request_key",
    "keyctl",
    "userfaultfd",
    "swapon",
    "swapoff",
];

/// A compiled filter: the BPF program the kernel gets.
#[derive(Clone)]
pub struct SeccompFilter {
    prog: Vec<libc::sock_filter>,
}

impl std::fmt::Debug for SeccompFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeccompFilter({} instructions)", self.prog.len())
    }
}

/// The names a deny list may use and their numbers here (the same names
/// on every architecture the agent builds for; Docker's default profile's
/// list is the model, plus the dangerous family above).
const SYSCALLS: &[(&str, libc::c_long)] = &[
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    // musl's libc crate lacks it on aarch64 and riscv64: asm-generic's 294.
    #[cfg(target_arch = "x86_64")]
    ("kexec_file_load", libc::SYS_kexec_file_load),
    #[cfg(not(target_arch = "x86_64"))]
    ("kexec_file_load", 294),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("keyctl", libc::SYS_keyctl),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("acct", libc::SYS_acct),
    ("adjtimex", libc::SYS_adjtimex),
    ("chroot", libc::SYS_chroot),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("clock_settime", libc::SYS_clock_settime),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("get_mempolicy", libc::SYS_get_mempolicy),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("kcmp", libc::SYS_kcmp),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("mbind", libc::SYS_mbind),
    ("migrate_pages", libc::SYS_migrate_pages),
    ("mknodat", libc::SYS_mknodat),
    ("move_pages", libc::SYS_move_pages),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("nfsservctl", libc::SYS_nfsservctl),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("personality", libc::SYS_personality),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("quotactl", libc::SYS_quotactl),
    ("reboot", libc::SYS_reboot),
    ("set_mempolicy", libc::SYS_set_mempolicy),
    ("setdomainname", libc::SYS_setdomainname),
    ("sethostname", libc::SYS_sethostname),
    ("setns", libc::SYS_setns),
    ("settimeofday", libc::SYS_settimeofday),
    ("syslog", libc::SYS_syslog),
    ("unshare", libc::SYS_unshare),
    ("vhangup", libc::SYS_vhangup),
];

/// x86_64's legacy calls: the asm-generic table of aarch64 and riscv64
/// has none of them, so there denying them is a no-op, not an error (one
/// profile serves every architecture).
pub(super) const LEGACY_NAMES: [&str; 7] = ["_sysctl", "ioperm", "iopl", "mknod", "sysfs", "uselib", "ustat"];
#[cfg(target_arch = "x86_64")]
const LEGACY: &[(&str, libc::c_long)] = &[
    ("_sysctl", libc::SYS__sysctl),
    ("ioperm", libc::SYS_ioperm),
    ("iopl", libc::SYS_iopl),
    ("mknod", libc::SYS_mknod),
    ("sysfs", libc::SYS_sysfs),
    ("uselib", libc::SYS_uselib),
    ("ustat", libc::SYS_ustat),
];
#[cfg(not(target_arch = "x86_64"))]
const LEGACY: &[(&str, libc::c_long)] = &[];

/// The number of a deny list's name here: Ok(None) for a name that has
/// no call on this architecture, Err for a name this agent does not know.
pub(super) fn syscall_number(name: &str) -> Result<Option<libc::c_long>, ConfineError> {
    if let Some(&(_, nr)) = SYSCALLS.iter().chain(LEGACY).find(|(n, _)| *n == name) {
        return Ok(Some(nr));
    }
    if LEGACY_NAMES.contains(&name) {
        return Ok(None);
    }
    Err(ConfineError::UnknownSyscall(name.to_string()))
}

/// Every name a deny list may use (for the integrator's docs and checks).
pub fn known_syscalls() -> impl Iterator<Item = &'static str> {
    SYSCALLS.iter().map(|(n, _)| *n).chain(LEGACY_NAMES)
}

impl SeccompFilter {
    /// A filter under which each named call fails with EPERM. A name this
    /// agent does not know is an error naming it.
    pub fn deny(names: &[&str]) -> Result<SeccompFilter, ConfineError> {
        let mut nrs = Vec::with_capacity(names.len());
        for name in names {
            nrs.extend(syscall_number(name)?);
        }
        Ok(SeccompFilter { prog: compile(&nrs)? })
    }

    /// The BPF program.
    pub fn program(&self) -> &[libc::sock_filter] {
        &self.prog
    }

    /// `seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog)` on the calling thread,
    /// in the forked child (async-signal-safe: the program was built
    /// before the fork). Needs no_new_privs or CAP_SYS_ADMIN (else EACCES).
    /// -1 and errno on failure.
    pub(crate) fn install_raw(&self) -> libc::c_long {
        let prog = libc::sock_fprog { len: self.prog.len() as libc::c_ushort, filter: self.prog.as_ptr().cast_mut() };
        // SAFETY: the kernel copies the program from a live Vec (len checked at compile); it only restricts this thread.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0 as libc::c_uint,
                &prog as *const libc::sock_fprog,
            )
        }
    }
}

/// BPF instruction codes used by the x32 guard (linux/bpf_common.h).
#[cfg(feature = "confine")]
mod bpf {
    /// BPF_LD | BPF_W | BPF_ABS
    pub const LD_W_ABS: u16 = 0x20;
    /// BPF_JMP | BPF_JGE | BPF_K
    pub const JMP_JGE_K: u16 = 0x35;
    /// BPF_RET | BPF_K
    pub const RET_K: u16 = 0x06;
    /// `__X32_SYSCALL_BIT`: x32 calls are x86_64's numbers with this bit.
    pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;
}

/// On x86_64: x32 calls (nr | 0x40000000) share x86_64's audit arch but
/// not its numbers, so the per-number rules cannot match them; this
/// prologue refuses them all with EPERM (libseccomp blocks them the same
/// way). Its jumps are relative to itself, so it is prepended as is.
#[cfg(feature = "confine")]
pub(super) fn x32_guard() -> [libc::sock_filter; 3] {
    let insn = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    [
        insn(bpf::LD_W_ABS, 0, 0, 0), // A = seccomp_data.nr
        insn(bpf::JMP_JGE_K, 0, 1, bpf::X32_SYSCALL_BIT),
        insn(bpf::RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ]
}

#[cfg(not(feature = "confine"))]
fn compile(_nrs: &[libc::c_long]) -> Result<Vec<libc::sock_filter>, ConfineError> {
    Err(ConfineError::NotBuilt("seccomp"))
}

#[cfg(feature = "confine")]
fn compile(nrs: &[libc::c_long]) -> Result<Vec<libc::sock_filter>, ConfineError> {
    use seccompiler::{BpfProgram, SeccompAction, TargetArch};

    // Its errors (identical actions, an unknown arch, over 4,096
    // instructions) cannot happen with this table; their Display would
    // cost ~2.5 KB of binary.
    let err = |_: seccompiler::BackendError| ConfineError::Seccomp("the deny list cannot be compiled".into());
    // Named, not parsed from std::env::consts::ARCH: TargetArch's parser
    // lower-cases its input, which links Unicode's case tables (~20 KB).
    #[cfg(target_arch = "x86_64")]
    let arch = TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    let arch = TargetArch::aarch64;
    #[cfg(target_arch = "riscv64")]
    let arch = TargetArch::riscv64;
    // An empty rule list: the call matches whatever its arguments.
    // (Inserted one by one: collect() would sort first, ~3 KB more code.)
    let mut rules = std::collections::BTreeMap::new();
    for &nr in nrs {
        rules.insert(nr, Vec::new());
    }
    let filter =
        seccompiler::SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
            .map_err(err)?;
    let compiled: BpfProgram = filter.try_into().map_err(err)?;
    let mut prog = Vec::with_capacity(compiled.len() + 3);
    if arch == TargetArch::x86_64 {
        prog.extend(x32_guard());
    }
    prog.extend(compiled.into_iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }));
    if prog.len() > usize::from(u16::MAX) {
        return Err(ConfineError::Seccomp("filter too long".into()));
    }
    Ok(prog)
}
