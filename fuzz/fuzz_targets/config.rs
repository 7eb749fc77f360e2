//! qemu-ga's command line and `[general]` config file: the input is
//! `config text` 0x00 `argv[1]` 0x00 `argv[2]` ...; every path the
//! parser would open reads that text instead (no file is opened), and a
//! configuration that parses is completed and dumped as `-D` would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga::config::{apply_defaults, dump, parse_with, Action};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let conf = parts.next().unwrap_or_default().to_vec();
    let mut argv = vec!["qemu-ga".to_string()];
    argv.extend(parts.take(64).map(|p| String::from_utf8_lossy(p).into_owned()));
    let names = ["guest-ping", "guest-exec", "guest-info"];
    let mut read = |_: &str| Ok(conf.clone());
    match parse_with(&argv, Some("/qga-fuzz/qemu-ga.conf"), &names, &mut read) {
        Action::Run(mut cfg) => {
            apply_defaults(&mut cfg);
            let text = dump(&cfg);
            assert!(text.starts_with("[general]"), "dump: {text}");
        }
        Action::Print(s) => assert!(!s.is_empty()),
        Action::Fail { code, .. } => assert_ne!(code, 0),
    }
});
