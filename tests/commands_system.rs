//! The information commands over a real socket (shapes and the values
//! checkable on this machine), test-qga.c's osinfo case, and the argument
//! checks of every command — the machine-changing ones only on paths that
//! change nothing.

mod commands_common;

use commands_common::{Agent, Opts};
use serde_json::{json, Value};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn test_qga_osinfo_file() {
    let dir = commands_common::TempDir::new("osr");
    let f = dir.join("test-qga-os-release");
    std::fs::write(
        &f,
        "ID=qemu-ga-test\nNAME=QEMU-GA\nPRETTY_NAME=\"QEMU Guest Agent test\"\nVERSION=\"Test 1\"\nVERSION_ID=1\n\
         VARIANT=\"Unit test \\\"\\'\\$\\`\\\\ and \\\\\\\\ etc.\"\nVARIANT_ID=unit-test\n",
    )
    .unwrap();
    let mut a = Agent::start_with(Opts {
        env: vec![("QGA_OS_RELEASE".into(), f.to_str().unwrap().into())],
        ..Default::default()
    });
    let r = a.ok("guest-get-osinfo", "{}");
    assert_eq!(r["id"], "qemu-ga-test");
    assert_eq!(r["name"], "QEMU-GA");
    assert_eq!(r["pretty-name"], "QEMU Guest Agent test");
    assert_eq!(r["version"], "Test 1");
    assert_eq!(r["version-id"], "1");
    assert_eq!(r["variant"], "Unit test \"'$`\\ and \\\\ etc.");
    assert_eq!(r["variant-id"], "unit-test");
    // uname(2)'s release, read independently of the agent's call.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim_end().to_string();
    assert_eq!(r["kernel-release"], release.as_str());
    assert!(r["kernel-version"].is_string() && r["machine"].is_string());

    // qemu-ga's quirks: unquoted values end at a space or ';', single
    // quotes are not quotes, CR is dropped, a later duplicate wins, keys of
    // another group are not seen; an unterminated quote keeps the tail.
    std::fs::write(
        &f,
        "ID=  spaced ;x\nNAME=\"abc\nPRETTY_NAME='single quoted'\n  VERSION = \"a\" trailing  \n# c\n\
         VERSION_ID=\"x\"\nVERSION_ID=dup\n[other]\nVARIANT=hidden\n[os-release]\nVARIANT_ID=\r\n",
    )
    .unwrap();
    let r = a.ok("guest-get-osinfo", "{}");
    assert_eq!(r["id"], "spaced");
    assert_eq!(r["name"], "abcc");
    assert_eq!(r["pretty-name"], "'single");
    assert_eq!(r["version"], "a");
    assert_eq!(r["version-id"], "dup");
    assert_eq!(r["variant-id"], "");
    assert!(r.get("variant").is_none());
    // Not a key file at all: no os-release members (no fallback with QGA_OS_RELEASE).
    std::fs::write(&f, "ID=ok\nthis is not a pair\n").unwrap();
    let r = a.ok("guest-get-osinfo", "{}");
    assert_eq!(keys(&r), vec!["kernel-release", "kernel-version", "machine"]);
    a.stop();
}

#[test]
fn information_commands() {
    let mut a = Agent::start();
    let t = a.ok("guest-get-time", "{}").as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64;
    assert!(t > 0 && (now - t).abs() < 60_000_000_000, "time {t} vs {now}");
    assert_eq!(t % 1000, 0, "microsecond resolution");

    let host = a.ok("guest-get-host-name", "{}");
    // gethostname(2)'s answer (the UTS nodename), read independently of the agent's call.
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host, json!({"host-name": name.trim_end_matches('\n')}));

    let tz = a.ok("guest-get-timezone", "{}");
    assert!(tz["offset"].is_i64());
    assert!(tz.get("zone").is_none_or(|z| z.is_string()));

    // Users: what this test reads from utmp itself (commands_machine.rs
    // checks a utmp file it writes).
    assert_eq!(a.ok("guest-get-users", "{}"), users_from_utmp());

    let load = a.ok("guest-get-load", "{}");
    assert_eq!(keys(&load), vec!["load15m", "load1m", "load5m"]);
    assert!(load["load1m"].is_number());

    let ifs = a.ok("guest-network-get-interfaces", "{}");
    let ifs = ifs.as_array().unwrap();
    assert!(ifs[0]["name"].is_string());
    {
        let lo = ifs.iter().find(|i| i["name"] == "lo").expect("the loopback interface is listed");
        assert_eq!(lo["hardware-address"], "00:00:00:00:00:00");
        let addrs = lo["ip-addresses"].as_array().unwrap();
        assert!(addrs.contains(&json!({"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8})));
        let st = &lo["statistics"];
        assert_eq!(
            keys(st),
            vec!["rx-bytes", "rx-dropped", "rx-errs", "rx-packets", "tx-bytes", "tx-dropped", "tx-errs", "tx-packets"]
        );
    }

    let routes = a.ok("guest-network-get-route", "{}");
    for r in routes.as_array().unwrap() {
        assert!(r["iface"].is_string() && r["destination"].is_string() && r["metric"].is_i64());
        match r["version"].as_i64().unwrap() {
            4 => assert_eq!(
                keys(r),
                vec![
                    "destination",
                    "flags",
                    "gateway",
                    "iface",
                    "irtt",
                    "mask",
                    "metric",
                    "mtu",
                    "refcnt",
                    "use",
                    "version",
                    "window"
                ]
            ),
            6 => assert_eq!(
                keys(r),
                vec![
                    "desprefixlen",
                    "destination",
                    "flags",
                    "iface",
                    "metric",
                    "nexthop",
                    "refcnt",
                    "source",
                    "srcprefixlen",
                    "use",
                    "version"
                ]
            ),
            v => panic!("version {v}"),
        }
    }

    // vcpus and memory blocks: what sysfs says, read by the test (sorted by
    // id: the agent lists them in readdir order).
    let by_id = |v: Value, id: &str| {
        let mut l: Vec<(u64, bool, bool)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e[id].as_u64().unwrap(), e["online"].as_bool().unwrap(), e["can-offline"].as_bool().unwrap()))
            .collect();
        l.sort();
        l
    };
    assert_eq!(by_id(a.ok("guest-get-vcpus", "{}"), "logical-id"), sysfs_blocks("/sys/devices/system/cpu", "cpu"));

    let fs = a.ok("guest-get-fsinfo", "{}");
    for f in fs.as_array().unwrap() {
        for k in ["name", "mountpoint", "type", "disk"] {
            assert!(f.get(k).is_some(), "fsinfo member {k}: {f}");
        }
    }
    // The root file system, when it is on a /dev block device (not an
    // overlay), is listed with the type /proc/self/mounts gives it.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    if let Some(root) = mounts.lines().map(|l| l.split(' ').collect::<Vec<_>>()).rfind(|f| f[1] == "/") {
        if root[0].starts_with("/dev/") {
            let listed = fs.as_array().unwrap().iter().find(|f| f["mountpoint"] == "/");
            assert_eq!(listed.map(|f| f["type"].clone()), Some(json!(root[2])), "root on {} in {fs}", root[0]);
        }
    }

    let info = a.cmd(r#"{"execute":"guest-get-memory-block-info"}"#);
    assert_eq!(info, memory_block_info_from_sysfs());
    let blocks = sysfs_blocks("/sys/devices/system/memory", "memory");
    if blocks.is_empty() {
        let r = a.cmd(r#"{"execute":"guest-get-memory-blocks"}"#);
        assert!(
            r == json!({"return": []})
                || r == json!({"error": {"class": "GenericError", "desc": "guest reported zero memory blocks!"}}),
            "{r}"
        );
    } else {
        assert_eq!(by_id(a.ok("guest-get-memory-blocks", "{}"), "phys-index"), blocks);
    }

    check_cpustats(&mut a);
    check_diskstats(&mut a);

    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    a.stop();
}

#[test]
fn guest_info_lists_the_linux_set() {
    let mut a = Agent::start();
    let info = a.ok("guest-info", "{}");
    let cmds = info["supported_commands"].as_array().unwrap();
    let names: Vec<&str> = cmds.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for n in [
        "guest-get-time",
        "guest-set-time",
        "guest-shutdown",
        "guest-file-open",
        "guest-file-close",
        "guest-file-read",
        "guest-file-write",
        "guest-file-seek",
        "guest-file-flush",
        "guest-fsfreeze-status",
        "guest-fsfreeze-freeze",
        "guest-fsfreeze-freeze-list",
        "guest-fsfreeze-thaw",
        "guest-fstrim",
        "guest-suspend-disk",
        "guest-suspend-ram",
        "guest-suspend-hybrid",
        "guest-network-get-interfaces",
        "guest-get-vcpus",
        "guest-set-vcpus",
        "guest-get-disks",
        "guest-get-fsinfo",
        "guest-set-user-password",
        "guest-get-memory-blocks",
        "guest-set-memory-blocks",
        "guest-get-memory-block-info",
        "guest-get-host-name",
        "guest-get-users",
        "guest-get-timezone",
        "guest-get-osinfo",
        "guest-ssh-get-authorized-keys",
        "guest-ssh-add-authorized-keys",
        "guest-ssh-remove-authorized-keys",
        "guest-get-diskstats",
        "guest-get-cpustats",
        "guest-get-load",
        "guest-network-get-route",
    ] {
        assert!(names.contains(&n), "{n} missing from guest-info");
    }
    // Reverse schema order: get-time registered right after ping.
    let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
    assert_eq!(pos("guest-get-time") + 1, pos("guest-ping"));
    assert_eq!(pos("guest-set-time") + 1, pos("guest-get-time"));
    assert!(pos("guest-network-get-route") < pos("guest-get-load"));
    for c in cmds {
        let silent = ["guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid"];
        assert_eq!(c["success-response"], !silent.contains(&c["name"].as_str().unwrap()), "{c}");
    }
    // guest-get-disks: as qemu-ga built with libudev (Debian's), right
    // before guest-get-fsinfo in schema order.
    assert_eq!(pos("guest-get-fsinfo") + 1, pos("guest-get-disks"));
    // Windows only in qemu-ga.
    let n = "guest-get-devices";
    assert!(!names.contains(&n));
    let (class, desc) = a.err(n, "{}");
    assert_eq!((class.as_str(), desc), ("CommandNotFound", format!("The command {n} has not been found")));
    a.stop();
}

/// `/dev/` + DEVNAME of a sysfs device's uevent file.
fn node_of(syspath: &str) -> Option<String> {
    let u = std::fs::read_to_string(format!("{syspath}/uevent")).ok()?;
    u.lines().find_map(|l| l.strip_prefix("DEVNAME=")).map(|n| format!("/dev/{n}"))
}

/// The PCI functions (domain, bus, slot, function) named in a sysfs path.
fn pci_functions(path: &str) -> Vec<[i64; 4]> {
    path.split('/')
        .filter_map(|c| {
            let (dom, rest) = c.split_once(':')?;
            let (bus, rest) = rest.split_once(':')?;
            let (slot, func) = rest.split_once('.')?;
            let h = |s: &str| (s.len() <= 4).then(|| i64::from_str_radix(s, 16).ok()).flatten();
            Some([h(dom)?, h(bus)?, h(slot)?, h(func)?])
        })
        .collect()
}

/// guest-get-disks against this machine's /sys, read here on its own:
/// every non-empty /sys/block link, its partitions after it, the whole
/// list reversed; dependencies; the address of real devices.
#[test]
fn disks_of_this_machine() {
    let mut a = Agent::start();
    let got = a.ok("guest-get-disks", "{}");
    a.stop();
    let got = got.as_array().unwrap();
    let mut expect: Vec<(String, bool, String)> = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if !e.file_type().unwrap().is_symlink() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let dir = format!("/sys/block/{name}");
        if std::fs::read_to_string(format!("{dir}/size")).map_or(true, |s| s == "0\n") {
            continue;
        }
        let Some(node) = node_of(&dir) else { continue };
        expect.push((node.clone(), false, dir.clone()));
        for p in std::fs::read_dir(&dir).unwrap().flatten() {
            let pn = p.file_name().to_string_lossy().into_owned();
            let rest = pn.strip_prefix(&name).unwrap_or("");
            let digit = |i: usize| rest.as_bytes().get(i).is_some_and(u8::is_ascii_digit);
            if p.file_type().unwrap().is_dir() && (digit(0) || (rest.starts_with('p') && digit(1))) {
                if let Some(pnode) = node_of(&format!("{dir}/{pn}")) {
                    expect.push((pnode, true, node.clone()));
                }
            }
        }
    }
    expect.reverse();
    let names: Vec<&str> = got.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, expect.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), "{got:?}");
    for (d, (node, partition, dir_or_parent)) in got.iter().zip(&expect) {
        assert_eq!(d["partition"], *partition, "{d}");
        if *partition {
            assert_eq!(d["dependencies"], json!([dir_or_parent]), "{d}");
            assert_eq!(keys(d), vec!["dependencies", "name", "partition"]);
            continue;
        }
        let mut slaves: Vec<String> = std::fs::read_dir(format!("{dir_or_parent}/slaves"))
            .unwrap()
            .flatten()
            .filter_map(|s| node_of(&std::fs::canonicalize(s.path()).unwrap().to_string_lossy()))
            .collect();
        slaves.reverse();
        assert_eq!(d["dependencies"], json!(slaves), "{d}");
        let real = std::fs::canonicalize(dir_or_parent).unwrap().to_string_lossy().into_owned();
        if real.contains("/devices/virtual/block/") {
            assert!(d.get("address").is_none(), "{d}");
            continue;
        }
        let addr = &d["address"];
        assert_eq!(addr["dev"], json!(node), "{d}");
        let bus_type = addr["bus-type"].as_str().unwrap();
        let pci = &addr["pci-controller"];
        let pci = [&pci["domain"], &pci["bus"], &pci["slot"], &pci["function"]].map(|v| v.as_i64().unwrap());
        if real.contains("/devices/pci") && bus_type != "unknown" {
            assert!(pci_functions(&real).contains(&pci), "{pci:?} not in {real}");
        }
        if real.contains("/devices/pci") && real.contains("/virtio") && !real.contains("/target") {
            assert_eq!(bus_type, "virtio", "{d}");
        }
        // SMART only for NVMe (and only when the controller answers).
        if let Some(smart) = d.get("smart") {
            assert_eq!((bus_type, &smart["type"]), ("nvme", &json!("nvme")), "{d}");
        }
    }
}

#[test]
fn argument_checks() {
    let mut a = Agent::start();
    let cases: &[(&str, &str, &str)] = &[
        ("guest-get-time", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-get-osinfo", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-get-fsinfo", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-get-disks", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-set-time", r#"{"time":"x"}"#, "Invalid parameter type for 'time', expected: integer"),
        ("guest-set-time", r#"{"time":1.0}"#, "Invalid parameter type for 'time', expected: integer"),
        // Out of qemu-ga's [1970, 2070) window: rejected before settimeofday().
        ("guest-set-time", r#"{"time":-1000000000}"#, "Invalid time"),
        ("guest-set-time", r#"{"time":3250000000000000000}"#, "Invalid time"),
        ("guest-shutdown", r#"{"mode":"foo"}"#, "mode is invalid (valid values are: halt|powerdown|reboot"),
        ("guest-shutdown", r#"{"mode":1}"#, "Invalid parameter type for 'mode', expected: string"),
        ("guest-shutdown", r#"{"mode":"halt","x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-suspend-disk", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-suspend-ram", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-suspend-hybrid", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-fstrim", r#"{"minimum":"x"}"#, "Invalid parameter type for 'minimum', expected: integer"),
        ("guest-fsfreeze-freeze", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        (
            "guest-fsfreeze-freeze-list",
            r#"{"mountpoints":"x"}"#,
            "Invalid parameter type for 'mountpoints', expected: array",
        ),
        (
            "guest-fsfreeze-freeze-list",
            r#"{"mountpoints":[1]}"#,
            "Invalid parameter type for 'mountpoints[0]', expected: string",
        ),
        ("guest-fsfreeze-thaw", r#"{"x":1}"#, "Parameter 'x' is unexpected"),
        ("guest-set-vcpus", r#"{}"#, "Parameter 'vcpus' is missing"),
        ("guest-set-vcpus", r#"{"vcpus":{}}"#, "Invalid parameter type for 'vcpus', expected: array"),
        ("guest-set-vcpus", r#"{"vcpus":[1]}"#, "Invalid parameter type for 'vcpus[0]', expected: object"),
        ("guest-set-vcpus", r#"{"vcpus":[{"online":true}]}"#, "Parameter 'vcpus[0].logical-id' is missing"),
        ("guest-set-vcpus", r#"{"vcpus":[{"logical-id":0}]}"#, "Parameter 'vcpus[0].online' is missing"),
        (
            "guest-set-vcpus",
            r#"{"vcpus":[{"logical-id":0,"online":1}]}"#,
            "Invalid parameter type for 'vcpus[0].online', expected: boolean",
        ),
        (
            "guest-set-vcpus",
            r#"{"vcpus":[{"logical-id":0,"online":true,"foo":1}],"bar":1}"#,
            "Parameter 'vcpus[0].foo' is unexpected",
        ),
        ("guest-set-vcpus", r#"{"vcpus":[],"bar":1}"#, "Parameter 'bar' is unexpected"),
        (
            "guest-set-vcpus",
            r#"{"vcpus":[{"logical-id":99999,"online":true}]}"#,
            "open(\"/sys/devices/system/cpu/cpu99999/\"): No such file or directory",
        ),
        (
            "guest-set-memory-blocks",
            r#"{"mem-blks":[{"phys-index":1.5,"online":true}]}"#,
            "Parameter 'mem-blks[0].phys-index' expects uint64",
        ),
        (
            "guest-set-memory-blocks",
            r#"{"mem-blks":[{"phys-index":1,"online":true,"can-offline":"x"}]}"#,
            "Invalid parameter type for 'mem-blks[0].can-offline', expected: boolean",
        ),
        ("guest-ssh-get-authorized-keys", r#"{}"#, "Parameter 'username' is missing"),
        (
            "guest-ssh-get-authorized-keys",
            r#"{"username":"qga-no-such-user"}"#,
            "failed to lookup user 'qga-no-such-user': Success",
        ),
        ("guest-ssh-add-authorized-keys", r#"{"username":"root"}"#, "Parameter 'keys' is missing"),
        (
            "guest-ssh-add-authorized-keys",
            r#"{"username":"root","keys":[1]}"#,
            "Invalid parameter type for 'keys[0]', expected: string",
        ),
        ("guest-ssh-add-authorized-keys", r##"{"username":"root","keys":["#x"]}"##, "invalid OpenSSH public key: '#x'"),
        (
            "guest-ssh-add-authorized-keys",
            r#"{"username":"root","keys":["a\nb"]}"#,
            "invalid OpenSSH public key: 'a\nb'",
        ),
        (
            "guest-ssh-add-authorized-keys",
            r#"{"username":"root","keys":["x"],"reset":"no"}"#,
            "Invalid parameter type for 'reset', expected: boolean",
        ),
        (
            "guest-ssh-add-authorized-keys",
            r#"{"username":"qga-no-such-user","keys":["a b"]}"#,
            "failed to lookup user 'qga-no-such-user': Success",
        ),
        (
            "guest-ssh-remove-authorized-keys",
            r#"{"username":"qga-no-such-user","keys":[]}"#,
            "failed to lookup user 'qga-no-such-user': Success",
        ),
        ("guest-set-user-password", r#"{"username":"x","password":"YQ=="}"#, "Parameter 'crypted' is missing"),
        (
            "guest-set-user-password",
            r#"{"username":"x","crypted":false,"password":1}"#,
            "Invalid parameter type for 'password', expected: string",
        ),
        (
            "guest-set-user-password",
            r#"{"username":"x","password":"!!","crypted":false}"#,
            "Base64 data contains invalid characters",
        ),
        (
            "guest-set-user-password",
            r#"{"username":"a:b","password":"YQ==","crypted":false}"#,
            "forbidden characters in username",
        ),
        (
            "guest-set-user-password",
            r#"{"username":"a\nb","password":"YQ==","crypted":false}"#,
            "forbidden characters in username",
        ),
        (
            "guest-set-user-password",
            r#"{"username":"ab","password":"YQpi","crypted":false}"#,
            "forbidden characters in raw password",
        ),
    ];
    for (cmd, args, want) in cases {
        assert_eq!(a.desc(cmd, args), *want, "{cmd} {args}");
    }
    a.stop();
}

#[test]
fn harmless_machine_paths() {
    let mut a = Agent::start();
    // Nothing to freeze: the hook-less freeze of no file system is 0 and
    // leaves the agent thawed; thaw of thawed file systems is 0.
    assert_eq!(a.ok("guest-fsfreeze-freeze-list", r#"{"mountpoints":["/qga-not-a-mountpoint"]}"#), 0);
    assert_eq!(a.ok("guest-fsfreeze-status", "{}"), "thawed");
    assert!(!a.dir.join("qga.state.isfrozen").exists());
    assert_eq!(a.ok("guest-fsfreeze-thaw", "{}"), 0);
    assert_eq!(a.ok("guest-set-vcpus", r#"{"vcpus":[]}"#), 0);
    if !commands_common::is_root() {
        // Writing cpuN/online and memoryN/state (even the state they have)
        // needs root.
        a.stop();
        return commands_common::skip::missing("root: guest-set-vcpus/guest-set-memory-blocks write sysfs");
    }
    // Setting a vcpu to the state it has changes nothing.
    let vcpus = a.ok("guest-get-vcpus", "{}");
    let online: Vec<&Value> = vcpus.as_array().unwrap().iter().filter(|v| v["online"] == true).collect();
    let list: Vec<Value> = online.iter().map(|v| json!({"logical-id": v["logical-id"], "online": true})).collect();
    assert_eq!(a.ok("guest-set-vcpus", &json!({"vcpus": list}).to_string()), json!(list.len()));
    if let Some(v) = vcpus.as_array().unwrap().iter().find(|v| v["can-offline"] == false) {
        let id = v["logical-id"].as_i64().unwrap();
        let args = json!({"vcpus": [{"logical-id": id, "online": false}]}).to_string();
        assert_eq!(a.desc("guest-set-vcpus", &args), format!("logical processor #{id} can't be offlined"));
        // The first one worked: the count of processed entries, no error.
        let args =
            json!({"vcpus": [{"logical-id": id, "online": true}, {"logical-id": 99999, "online": true}]}).to_string();
        assert_eq!(a.ok("guest-set-vcpus", &args), 1);
    }
    let r = a.ok("guest-set-memory-blocks", r#"{"mem-blks":[{"phys-index":99999999,"online":true}]}"#);
    if std::path::Path::new("/sys/devices/system/memory").exists() {
        assert_eq!(r, json!([{"phys-index": 99999999, "response": "not-found", "error-code": 2}]));
    }
    let blocks = a.cmd(r#"{"execute":"guest-get-memory-blocks"}"#);
    if let Some(b) =
        blocks.get("return").and_then(|b| b.as_array()).and_then(|b| b.iter().find(|b| b["online"] == true))
    {
        let args = json!({"mem-blks": [{"phys-index": b["phys-index"], "online": true}]}).to_string();
        assert_eq!(
            a.ok("guest-set-memory-blocks", &args),
            json!([{"phys-index": b["phys-index"], "response": "success"}])
        );
    }
    assert_eq!(a.ok("guest-set-memory-blocks", r#"{"mem-blks":[]}"#), json!([]));
    a.stop();
}

#[test]
fn set_user_password_runs_chpasswd() {
    // A fake chpasswd first in PATH records its stdin and arguments.
    let bin = commands_common::TempDir::new("fakebin");
    let log = bin.join("log");
    commands_common::script(
        &bin.join("chpasswd"),
        &format!(
            "cat >> {l}; echo \"args:$*\" >> {l}; [ -e {l}.fail ] && {{ echo 'no such user'; exit 1; }}; exit 0",
            l = log.display()
        ),
    );
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let mut a = Agent::start_with(Opts { env: vec![("PATH".into(), path)], ..Default::default() });
    assert_eq!(
        a.ok("guest-set-user-password", r#"{"username":"alice","password":"c2VjcmV0","crypted":false}"#),
        json!({})
    );
    assert_eq!(
        a.ok("guest-set-user-password", r#"{"username":"bob","password":"JDEkeHl6","crypted":true}"#),
        json!({})
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "alice:secret\nargs:\nbob:$1$xyz\nargs:-e\n");
    std::fs::write(format!("{}.fail", log.display()), "").unwrap();
    assert_eq!(
        a.desc("guest-set-user-password", r#"{"username":"alice","password":"c2VjcmV0","crypted":false}"#),
        "child process has failed to set user password: no such user\n"
    );
    // Requests sent while the helper runs are answered after it, in order.
    a.send_raw(r#"{"execute":"guest-set-user-password","arguments":{"username":"a","password":"YQ==","crypted":false},"id":1}{"execute":"guest-ping","id":2}"#);
    assert!(a.line().contains("\"id\": 1"));
    assert_eq!(a.line(), r#"{"return": {}, "id": 2}"#);
    a.stop();

    // Without chpasswd: qemu-ga's exec failure text.
    let empty = commands_common::TempDir::new("nobin");
    let mut a = Agent::start_with(Opts {
        env: vec![("PATH".into(), empty.path().to_str().unwrap().into())],
        ..Default::default()
    });
    assert_eq!(
        a.desc("guest-set-user-password", r#"{"username":"alice","password":"c2VjcmV0","crypted":false}"#),
        "child process has failed to set user password: failed to exec 'chpasswd': No such file or directory\n"
    );
    a.stop();
}

#[test]
fn timezone_follows_tz_like_glib() {
    for (tz, want) in [
        ("<+0330>-3:30", json!({"zone": "+0330", "offset": 12600})),
        ("EST5", json!({"zone": "EST", "offset": -18000})),
        // Unusable TZ values: GLib falls back to UTC.
        ("FOO", json!({"zone": "UTC", "offset": 0})),
        ("AB5", json!({"zone": "UTC", "offset": 0})),
    ] {
        let mut a = Agent::start_with(Opts { env: vec![("TZ".into(), tz.into())], ..Default::default() });
        assert_eq!(a.ok("guest-get-timezone", "{}"), want, "TZ={tz}");
        a.stop();
    }
}

// ---------------------------------------------------------------------------
// Expected values read by the test itself from /sys, /proc and utmp
// ---------------------------------------------------------------------------

/// guest-get-memory-block-info's whole reply, from block_size_bytes (hex).
fn memory_block_info_from_sysfs() -> Value {
    match std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes") {
        Ok(t) => {
            let size = u64::from_str_radix(t.trim(), 16).expect("block_size_bytes is hex");
            assert!(size > 0);
            json!({"return": {"size": size}})
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            json!({"error": {"class": "GenericError", "desc": "open(\"/sys/devices/system/memory\"): No such file or directory"}})
        }
        Err(e) => panic!("block_size_bytes: {e}"),
    }
}

/// `DIR/PREFIX<n>` entries of sysfs as (n, online, can-offline), sorted:
/// for cpus the `online` file (absent: online, cannot go offline), for
/// memory blocks `state` (`online...`) and `removable` (absent: false).
fn sysfs_blocks(dir: &str, prefix: &str) -> Vec<(u64, bool, bool)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix(prefix).and_then(|n| n.parse::<u64>().ok()) else { continue };
        if !e.path().is_dir() {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(e.path().join(f)).ok();
        v.push(match prefix {
            "cpu" => match read("online") {
                None => (n, true, false),
                Some(t) => (n, !t.starts_with('0'), true),
            },
            _ => match read("state") {
                None => (n, true, false),
                Some(t) => (n, t.starts_with("online"), read("removable").is_some_and(|r| !r.starts_with('0'))),
            },
        });
    }
    v.sort();
    v
}

/// `cpuN` lines of /proc/stat: (N, counters in clock ticks).
fn proc_stat_cpus() -> Vec<(i64, Vec<u64>)> {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let mut f = l.split_whitespace();
            let n = f.next().unwrap()[3..].parse().unwrap();
            (n, f.map(|x| x.parse().unwrap()).collect())
        })
        .collect()
}

/// guest-get-cpustats against /proc/stat read before and after: one entry
/// per cpuN line, in order, every counter (ms) between the two readings.
fn check_cpustats(a: &mut Agent) {
    let tck = qga_sys::host::clock_ticks();
    let before = proc_stat_cpus();
    let cpus = a.ok("guest-get-cpustats", "{}");
    let after = proc_stat_cpus();
    assert!(!before.is_empty(), "/proc/stat has no cpuN line");
    let cpus = cpus.as_array().unwrap();
    assert_eq!(cpus.len(), before.len(), "one entry per cpuN line of /proc/stat: {cpus:?}");
    const NAMES: [&str; 10] =
        ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guestnice"];
    for ((c, (n, lo)), (_, hi)) in cpus.iter().zip(&before).zip(&after) {
        assert_eq!(c["type"], "linux");
        assert_eq!(c["cpu"], json!(n), "{c}");
        let mut want: Vec<&str> = vec!["cpu", "type"];
        want.extend(NAMES.iter().take(lo.len().min(10)));
        want.sort();
        assert_eq!(keys(c), want, "{c}");
        for (i, k) in NAMES.iter().enumerate().take(lo.len()) {
            let v = c[k].as_u64().unwrap_or_else(|| panic!("{k} in {c}"));
            let (l, h) = (lo[i] * 1000 / tck, hi[i] * 1000 / tck);
            assert!(l <= v && v <= h, "cpu{n} {k}: {v} ms not within /proc/stat's {l}..={h}");
        }
    }
}

/// /proc/diskstats: (major, minor, name, counters).
fn proc_diskstats() -> Vec<(u64, u64, String, Vec<u64>)> {
    std::fs::read_to_string("/proc/diskstats")
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_string(),
                f[3..].iter().map(|x| x.parse().unwrap()).collect(),
            )
        })
        .collect()
}

/// guest-get-diskstats against /proc/diskstats read before and after (the
/// same devices; retried if one came or went): every device in order, each
/// counter between the two readings (in-flight I/O only present).
fn check_diskstats(a: &mut Agent) {
    // Field names after the device name, in /proc/diskstats order.
    const F: [&str; 17] = [
        "read-ios",
        "read-merges",
        "read-sectors",
        "read-ticks",
        "write-ios",
        "write-merges",
        "write-sectors",
        "write-ticks",
        "ios-pgr",
        "total-ticks",
        "weight-ticks",
        "discard-ios",
        "discard-merges",
        "discard-sectors",
        "discard-ticks",
        "flush-ios",
        "flush-ticks",
    ];
    for _ in 0..20 {
        let before = proc_diskstats();
        let disks = a.ok("guest-get-diskstats", "{}");
        let after = proc_diskstats();
        let names = |v: &[(u64, u64, String, Vec<u64>)]| v.iter().map(|d| (d.0, d.1, d.2.clone())).collect::<Vec<_>>();
        if names(&before) != names(&after) {
            continue; // a device came or went meanwhile
        }
        let disks = disks.as_array().unwrap();
        let got: Vec<(u64, u64, String)> = disks
            .iter()
            .map(|d| {
                (d["major"].as_u64().unwrap(), d["minor"].as_u64().unwrap(), d["name"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(got, names(&before), "the devices of /proc/diskstats, in order");
        for ((d, b), af) in disks.iter().zip(&before).zip(&after) {
            let st = &d["stats"];
            let mut want: Vec<&str> = F.iter().take(b.3.len()).copied().collect();
            want.sort();
            assert_eq!(keys(st), want, "{d}");
            for (i, k) in F.iter().enumerate().take(b.3.len()) {
                let v = st[k].as_u64().unwrap_or_else(|| panic!("{k} in {d}"));
                if *k != "ios-pgr" {
                    assert!(b.3[i] <= v && v <= af.3[i], "{} {k}: {v} not within {}..={}", b.2, b.3[i], af.3[i]);
                }
            }
        }
        return;
    }
    panic!("/proc/diskstats kept changing its device list");
}

/// guest-get-users computed from utmp (glibc x86_64 `struct utmpx`, 384
/// bytes): USER_PROCESS entries, by name in first-seen order, earliest login.
fn users_from_utmp() -> Value {
    // A build-time fact, checked where the layout is used.
    #[allow(clippy::assertions_on_constants)]
    {
        assert!(cfg!(all(target_arch = "x86_64", target_env = "gnu")), "utmpx layout of glibc x86_64 assumed");
    }
    let data = std::fs::read("/var/run/utmp").unwrap_or_default();
    let mut users: Vec<(String, f64)> = Vec::new();
    for r in data.chunks_exact(384) {
        if i16::from_ne_bytes([r[0], r[1]]) != 7 {
            continue;
        }
        let name = &r[44..76];
        let name = String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(32)]).into_owned();
        let sec = i32::from_ne_bytes(r[340..344].try_into().unwrap()) as f64;
        let usec = i32::from_ne_bytes(r[344..348].try_into().unwrap()) as f64;
        let t = sec + usec / 1e6;
        match users.iter_mut().find(|(n, _)| *n == name) {
            Some(u) => u.1 = u.1.min(t),
            None => users.push((name, t)),
        }
    }
    Value::Array(users.into_iter().map(|(n, t)| json!({"user": n, "login-time": t})).collect())
}
