//! The machine-changing commands on safe ground: the fsfreeze hook and
//! frozen state (no file system of this machine is frozen), and, as root
//! in a private mount namespace, guest-shutdown and guest-set-time against
//! fake /sbin programs, the ssh key commands against a fake /etc/passwd,
//! and a real freeze/thaw of a scratch loop-mounted ext4. The namespace
//! cases need root (`unshare -m`, bind and loop mounts, mkfs.ext4): without
//! them they are recorded skips (`make test` lists them), and under CI
//! (`CI=true`, root) failures. A failed agent start is always a failure.

mod commands_common;

use commands_common::{script, skip, Agent, Opts, TempDir};
use serde_json::json;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn fsfreeze_hook_and_state_without_freezing() {
    let tools = TempDir::new("hook");
    let log = tools.join("log");
    let hook = tools.join("hook.sh");
    script(
        &hook,
        &format!(
            "echo \"$1\" >> {l}; [ -e {l}.fail ] && {{ echo \"hook failed on $1\"; exit 4; }}; exit 0",
            l = log.display()
        ),
    );
    let mut a = Agent::start_with(Opts { args: vec![format!("-F{}", hook.display())], ..Default::default() });
    // Mount points that match nothing: hook runs, nothing frozen, thawed.
    assert_eq!(a.ok("guest-fsfreeze-freeze-list", r#"{"mountpoints":["/qga-not-a-mountpoint"]}"#), 0);
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    assert_eq!(a.ok("guest-fsfreeze-thaw", "{}"), 0);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "freeze\nthaw\n");
    std::fs::write(format!("{}.fail", log.display()), "").unwrap();
    assert_eq!(
        a.desc("guest-fsfreeze-freeze", "{}"),
        "child process has failed to execute fsfreeze hook: hook failed on freeze\n"
    );
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    assert_eq!(
        a.desc("guest-fsfreeze-thaw", "{}"),
        "child process has failed to execute fsfreeze hook: hook failed on thaw\n"
    );
    a.stop();

    // A hook that does not exist.
    let mut a = Agent::start_with(Opts { args: vec!["-F/qga-no-such-hook".into()], ..Default::default() });
    assert_eq!(
        a.desc("guest-fsfreeze-freeze", "{}"),
        "child process has failed to execute fsfreeze hook: failed to exec '/qga-no-such-hook': No such file or directory\n"
    );
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    a.stop();
}

#[test]
fn start_up_with_frozen_marker() {
    let dir = TempDir::new("frozen");
    std::fs::write(dir.join("qga.state.isfrozen"), "").unwrap();
    let marker = dir.join("qga.state.isfrozen");
    let state = dir.join("qga.state");
    let mut a = Agent::start_with(Opts { dir: Some(dir), ..Default::default() });
    assert!(!state.exists(), "nothing is written while frozen");
    assert_eq!(a.ok("guest-ping", "{}"), json!({}));
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "frozen");
    assert_eq!(
        a.err("guest-get-osinfo", "{}"),
        (
            "CommandNotFound".to_string(),
            "Command guest-get-osinfo has been disabled: the command is not allowed".to_string()
        )
    );
    let info = a.ok("guest-info", "{}");
    let enabled: Vec<&str> = info["supported_commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["enabled"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        enabled,
        vec![
            "guest-fsfreeze-thaw",
            "guest-fsfreeze-status",
            "guest-info",
            "guest-ping",
            "guest-sync",
            "guest-sync-delimited"
        ]
    );
    // Thaw (FITHAW on file systems that are not frozen changes nothing).
    assert!(a.ok("guest-fsfreeze-thaw", "{}").is_i64());
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    assert!(!marker.exists());
    assert!(a.ok("guest-get-osinfo", "{}").is_object());
    a.stop();
}

/// Fake programs for /sbin, checked before the agent may start.
fn fake_sbin(dir: &TempDir, log: &std::path::Path) {
    for p in ["poweroff", "halt", "reboot", "shutdown", "hwclock"] {
        script(
            &dir.join(p),
            &format!(
                "# QGA-FAKE\necho \"$0 $*\" >> {l}; [ -e {l}.fail ] && {{ echo \"{p} failed\"; exit 2; }}; exit 0",
                l = log.display()
            ),
        );
    }
}

#[test]
fn shutdown_and_hwclock_with_fake_sbin() {
    if commands_common::is_reference() {
        return skip::not_applicable("the /sbin/poweroff|halt|reboot rule is QEMU 10.2's");
    }
    let fake = TempDir::new("sbin");
    let logdir = TempDir::new("sbinlog");
    let log = logdir.join("log");
    fake_sbin(&fake, &log);
    let d = fake.path().display();
    // Every program guest-shutdown could run must be a fake, or no agent.
    let prelude = format!(
        "mount --bind {d} /sbin && for p in poweroff halt reboot shutdown hwclock; do grep -q QGA-FAKE /sbin/$p || exit 1; done"
    );
    let Some(mut a) = Agent::start_in_ns(&prelude, Opts::default()) else { return };
    // QEMU 10.2: the mode's own program, no arguments, and no reply: the
    // next line is the reply to a ping sent right behind (requests wait
    // behind the helper, so it has run by then). No waiting window.
    for (mode, prog) in [("powerdown", "poweroff"), ("halt", "halt"), ("reboot", "reboot")] {
        a.send_raw(&format!(
            r#"{{"execute":"guest-shutdown","arguments":{{"mode":"{mode}"}}}}{{"execute":"guest-ping","id":"{mode}"}}"#
        ));
        assert_eq!(a.line(), format!(r#"{{"return": {{}}, "id": "{mode}"}}"#), "no reply to a successful shutdown");
        let last = std::fs::read_to_string(&log).unwrap().lines().last().unwrap().to_string();
        assert_eq!(last, format!("/sbin/{prog} "));
    }
    a.send_raw(r#"{"execute":"guest-shutdown"}{"execute":"guest-ping","id":"after"}"#);
    assert_eq!(a.line(), r#"{"return": {}, "id": "after"}"#);
    // Without /sbin/poweroff: /sbin/shutdown with the Linux flags.
    std::fs::remove_file(fake.join("poweroff")).unwrap();
    a.send_raw(r#"{"execute":"guest-shutdown"}{"execute":"guest-ping"}"#);
    assert_eq!(a.line(), r#"{"return": {}}"#);
    let last = std::fs::read_to_string(&log).unwrap().lines().last().unwrap().to_string();
    assert_eq!(last, "/sbin/shutdown -h -P +0 hypervisor initiated shutdown");
    // Failures are reported with the helper's output.
    std::fs::write(format!("{}.fail", log.display()), "").unwrap();
    assert_eq!(a.desc("guest-shutdown", "{}"), "child process has failed to shutdown: shutdown failed\n");
    assert_eq!(
        a.desc("guest-shutdown", r#"{"mode":"reboot"}"#),
        "child process has failed to shutdown: reboot failed\n"
    );
    // guest-set-time without a time: hwclock -s (never settimeofday here).
    assert_eq!(
        a.desc("guest-set-time", "{}"),
        "child process has failed to set hardware clock to system time: hwclock failed\n"
    );
    std::fs::remove_file(format!("{}.fail", log.display())).unwrap();
    assert_eq!(a.ok("guest-set-time", "{}"), json!({}));
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().last().unwrap(), "/sbin/hwclock -s");
    std::fs::remove_file(fake.join("hwclock")).unwrap();
    assert_eq!(
        a.desc("guest-set-time", "{}"),
        "child process has failed to set hardware clock to system time: failed to exec '/sbin/hwclock': No such file or directory\n"
    );
    a.stop();
}

#[test]
fn ssh_keys_with_fake_passwd() {
    if !skip::have_mount_ns() {
        return; // chown below needs root too
    }
    let t = TempDir::new("ssh");
    let home = t.join("home");
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(4242), Some(4243)).unwrap();
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!("qgatest:x:4242:4243::{}:/bin/sh\n", home.display()));
    std::fs::write(t.join("passwd"), passwd).unwrap();
    let prelude = format!("mount --bind {} /etc/passwd", t.join("passwd").display());
    let Some(mut a) = Agent::start_in_ns(&prelude, Opts::default()) else { return };
    let keys_file = home.join(".ssh/authorized_keys");
    assert_eq!(
        a.desc("guest-ssh-get-authorized-keys", r#"{"username":"qgatest"}"#),
        format!(
            "failed to read '{p}': Failed to open file \u{201C}{p}\u{201D}: No such file or directory",
            p = keys_file.display()
        )
    );
    // Removing from a missing file is fine.
    assert_eq!(a.ok("guest-ssh-remove-authorized-keys", r#"{"username":"qgatest","keys":["k"]}"#), json!({}));
    assert_eq!(
        a.ok(
            "guest-ssh-add-authorized-keys",
            r#"{"username":"qgatest","keys":["ssh-rsa AAA one","ssh-ed25519 BBB two"]}"#
        ),
        json!({})
    );
    let ssh = std::fs::metadata(home.join(".ssh")).unwrap();
    assert_eq!((ssh.permissions().mode() & 0o777, ssh.uid(), ssh.gid()), (0o700, 4242, 4243));
    let f = std::fs::metadata(&keys_file).unwrap();
    assert_eq!((f.permissions().mode() & 0o777, f.uid(), f.gid()), (0o600, 4242, 4243));
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), "ssh-rsa AAA one\nssh-ed25519 BBB two");
    // Listed last first, like qemu-ga; blanks and comments skipped, trimmed.
    a.ok("guest-ssh-add-authorized-keys", r#"{"username":"qgatest","keys":["ssh-rsa AAA one","k3"]}"#);
    let mut text = std::fs::read_to_string(&keys_file).unwrap();
    text.push_str("\n# c\n  k4  \n");
    std::fs::write(&keys_file, text).unwrap();
    assert_eq!(
        a.ok("guest-ssh-get-authorized-keys", r#"{"username":"qgatest"}"#),
        json!({"keys": ["k4", "k3", "ssh-ed25519 BBB two", "ssh-rsa AAA one"]})
    );
    a.ok("guest-ssh-remove-authorized-keys", r#"{"username":"qgatest","keys":["k3","absent"]}"#);
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), "ssh-rsa AAA one\nssh-ed25519 BBB two\n# c\n  k4  \n");
    a.ok("guest-ssh-add-authorized-keys", r#"{"username":"qgatest","keys":["k5"],"reset":true}"#);
    assert_eq!(std::fs::read_to_string(&keys_file).unwrap(), "k5");
    assert_eq!(a.ok("guest-ssh-get-authorized-keys", r#"{"username":"qgatest"}"#), json!({"keys": ["k5"]}));
    a.stop();
}

#[test]
fn freeze_and_thaw_a_scratch_filesystem() {
    let t = TempDir::new("freeze");
    let Some((prelude, mnt)) = commands_common::scratch_ext4(&t) else { return };
    let Some(mut a) = Agent::start_in_ns(&prelude, Opts::default()) else { return };
    let m = mnt.to_str().unwrap();
    assert_eq!(a.ok("guest-fsfreeze-freeze-list", &json!({"mountpoints": [m]}).to_string()), 1);
    let frozen = a.ok("guest-fsfreeze-status", "{}");
    let marker = a.dir.join("qga.state.isfrozen").exists();
    let marker_mode = std::fs::metadata(a.dir.join("qga.state.isfrozen")).map(|m| m.permissions().mode() & 0o777).ok();
    let blocked = a.err("guest-get-host-name", "{}");
    let again = a.err("guest-fsfreeze-freeze-list", &json!({"mountpoints": [m]}).to_string());
    // Always thaw before asserting.
    let thawed = a.ok("guest-fsfreeze-thaw", "{}");
    assert_eq!(frozen, "frozen");
    assert!(marker);
    assert_eq!(marker_mode, Some(0o600));
    assert_eq!(blocked.1, "Command guest-get-host-name has been disabled: the command is not allowed");
    assert_eq!(again.1, "Command guest-fsfreeze-freeze-list has been disabled: the command is not allowed");
    assert_eq!(thawed, 1);
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    assert!(!a.dir.join("qga.state.isfrozen").exists());
    assert_eq!(a.ok("guest-fsfreeze-thaw", "{}"), 0);
    // The scratch file system is listed by guest-get-fsinfo (last mount first).
    let fs = a.ok("guest-get-fsinfo", "{}");
    let first = &fs[0];
    assert_eq!(first["mountpoint"], m);
    assert_eq!(first["type"], "ext4");
    assert!(first["name"].as_str().unwrap().starts_with("loop"));
    assert_eq!(first["disk"], json!([]));
    assert!(first["total-bytes"].as_u64().unwrap() > 0);
    a.stop();
}

/// One `struct utmpx` record (glibc x86_64 layout, 384 bytes).
fn utmp_record(kind: i16, user: &[u8], sec: i32, usec: i32) -> Vec<u8> {
    let mut r = vec![0u8; 384];
    r[0..2].copy_from_slice(&kind.to_ne_bytes());
    r[4..8].copy_from_slice(&1234i32.to_ne_bytes());
    r[8..13].copy_from_slice(b"pts/0");
    r[44..44 + user.len()].copy_from_slice(user);
    r[76..80].copy_from_slice(b"host");
    r[340..344].copy_from_slice(&sec.to_ne_bytes());
    r[344..348].copy_from_slice(&usec.to_ne_bytes());
    r
}

#[test]
fn users_from_a_fake_utmp() {
    if !cfg!(all(target_arch = "x86_64", target_env = "gnu")) {
        return skip::missing("glibc's x86_64 utmpx layout");
    }
    if commands_common::is_reference() {
        return skip::not_applicable("qemu-ga's 32-byte user name overread is not copied");
    }
    let run = TempDir::new("run");
    let mut data = Vec::new();
    data.extend(utmp_record(7, b"alice", 1_700_000_000, 500_000));
    data.extend(utmp_record(8, b"dead", 1_600_000_000, 0)); // DEAD_PROCESS: ignored
    data.extend(utmp_record(7, b"bob", 1_700_000_100, 0));
    data.extend(utmp_record(7, b"alice", 1_690_000_000, 250_000)); // earlier login wins
    data.extend(utmp_record(7, &[b'x'; 32], 1_700_000_200, 1));
    std::fs::write(run.join("utmp"), data).unwrap();
    let prelude = format!("mount --bind {} /run", run.path().display());
    let Some(mut a) = Agent::start_in_ns(&prelude, Opts::default()) else { return };
    assert_eq!(
        a.raw(r#"{"execute":"guest-get-users"}"#),
        // A 32-byte name ends at its field (qemu-ga reads on into ut_host:
        // a buffer overread we do not copy).
        format!(
            r#"{{"return": [{{"login-time": 1690000000.25, "user": "alice"}}, {{"login-time": 1700000100, "user": "bob"}}, {{"login-time": 1700000200.000001, "user": "{}"}}]}}"#,
            "x".repeat(32)
        )
    );
    a.stop();
}

#[test]
fn suspend_with_fake_helpers_and_sysfs() {
    if commands_common::is_reference() {
        // qemu-ga 10.0 writes /sys/power/state with g_file_set_contents(),
        // i.e. through a temporary file in /sys/power, which always fails;
        // later QEMU (and qga) write the file directly.
        return skip::not_applicable("qemu-ga 10.0's sysfs suspend is broken");
    }
    let t = TempDir::new("suspend");
    let state = t.join("state");
    std::fs::write(&state, "freeze mem disk QGA-FAKE\n").unwrap();
    let bin = TempDir::new("suspendbin");
    let log = t.join("log");
    // Only fakes on PATH: the real systemctl/pm-utils can never run.
    let prelude = format!(
        "mount --bind {} /sys/power/state && grep -q QGA-FAKE /sys/power/state && export PATH={}",
        state.display(),
        bin.path().display()
    );
    let Some(mut a) = Agent::start_in_ns(&prelude, Opts::default()) else { return };
    // No systemd, no pm-utils: /sys/power/state, and no reply (the next
    // line answers the ping sent right behind).
    a.send_raw(r#"{"execute":"guest-suspend-ram"}{"execute":"guest-ping","id":"ram"}"#);
    assert_eq!(a.line(), r#"{"return": {}, "id": "ram"}"#, "no reply to a successful suspend");
    assert!(std::fs::read_to_string(&state).unwrap().starts_with("mem"));
    std::fs::write(&state, "freeze disk QGA-FAKE\n").unwrap();
    a.send_raw(r#"{"execute":"guest-suspend-disk"}{"execute":"guest-ping"}"#);
    assert_eq!(a.line(), r#"{"return": {}}"#);
    assert!(std::fs::read_to_string(&state).unwrap().starts_with("disk"));
    std::fs::write(&state, "freeze QGA-FAKE\n").unwrap();
    assert_eq!(a.desc("guest-suspend-ram", "{}"), "the requested suspend mode is not supported by the guest");
    assert_eq!(a.desc("guest-suspend-hybrid", "{}"), "the requested suspend mode is not supported by the guest");
    // systemd: `systemctl status <unit>` exit 1..3 means supported.
    let fail = format!("{}.fail", log.display());
    script(
        &bin.join("systemctl"),
        &format!(
            "echo \"$*\" >> {l}; [ \"$1\" = status ] && exit 3; [ -e {fail} ] && exit 1; exit 0",
            l = log.display()
        ),
    );
    a.send_raw(r#"{"execute":"guest-suspend-hybrid"}{"execute":"guest-ping"}"#);
    assert_eq!(a.line(), r#"{"return": {}}"#);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "status systemd-hybrid-sleep\nhybrid-sleep\n");
    // systemd fails and sysfs cannot do hybrid: qemu-ga's text.
    std::fs::write(&fail, "").unwrap();
    assert_eq!(a.desc("guest-suspend-hybrid", "{}"), "unknown guest suspend mode");
    a.stop();
}
