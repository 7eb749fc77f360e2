//! The guest-exec request: the program (or the wrappers for staged
//! stdin and `shell`), its environment, terminal, capture and qga's
//! extensions.

use serde_json::{json, Value};

use super::caps::Caps;
use super::stdin::Input;
use crate::cli::ExecArgs;

/// Runs the staged stdin file as the program's stdin: opens it, removes
/// it (and its private directory) and execs the program, so the exit
/// status is the program's own.
const STAGE_SCRIPT: &str = r#"exec <"$0" || exit 125; rm -f "$0" 2>/dev/null; rmdir "${0%/*}" 2>/dev/null; exec "$@""#;

/// `qgactl shell`: the login shell of the uid it runs as (the shell field
/// of /etc/passwd when executable, else /bin/sh), started with -l in that
/// user's home directory with HOME, USER, LOGNAME and SHELL set.
const SHELL_SCRIPT: &str = r#"u=$(id -u 2>/dev/null) || u=0
sh=/bin/sh
if [ -r /etc/passwd ]; then
  while IFS=: read -r name pw uid gid gecos home shell; do
    if [ "$uid" = "$u" ]; then
      if [ -n "$shell" ] && [ -x "$shell" ]; then sh=$shell; fi
      export USER="$name" LOGNAME="$name"
      if [ -n "$home" ] && cd "$home" 2>/dev/null; then export HOME="$home"; fi
      break
    fi
  done </etc/passwd
fi
export SHELL="$sh"
exec "$sh" -l"#;
/// The guest-exec arguments. `streaming`: output by long-polls (qga);
/// `size`: the local window size for a terminal.
pub(super) fn exec_request(
    a: &ExecArgs,
    caps: &Caps,
    input: &Input,
    streaming: bool,
    size: Option<(u16, u16)>,
) -> Value {
    let mut argv: Vec<String> = Vec::new();
    let path = match input {
        Input::Staged { file, .. } => {
            argv.extend(["-c".to_string(), STAGE_SCRIPT.to_string(), file.clone(), a.program.clone()]);
            "/bin/sh".to_string()
        }
        _ if a.shell => {
            argv.extend(["-c".to_string(), SHELL_SCRIPT.to_string(), "qgactl-shell".to_string()]);
            "/bin/sh".to_string()
        }
        _ => a.program.clone(),
    };
    argv.extend(a.args.iter().cloned());
    let mut req = json!({"path": path});
    if !argv.is_empty() {
        req["arg"] = json!(argv);
    }
    if !a.env.is_empty() {
        req["env"] = json!(a.env);
    }
    if a.tty {
        // A terminal is captured, streamed and fed by itself.
        req["tty"] = json!(true);
        if let Some((rows, cols)) = size {
            req["rows"] = json!(rows);
            req["cols"] = json!(cols);
        }
    } else {
        // `true` rather than "separated": understood by every qemu-ga since 2.5.
        req["capture-output"] = if a.merge { json!("merged") } else { json!(true) };
    }
    if caps.ext {
        if streaming && !a.tty {
            req["stream"] = json!(true);
        }
        if matches!(input, Input::Stream(_)) && !a.tty {
            req["input-stream"] = json!(true);
        }
        if let Some(t) = a.timeout {
            req["timeout"] = json!(t);
        }
        if let Some(d) = &a.cwd {
            req["cwd"] = json!(d);
        }
        if let Some(u) = &a.user {
            req["user"] = json!(u);
        }
        if let Some(p) = &a.profile {
            req["profile"] = json!(p);
        }
    }
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    const QGA: Caps = Caps { ext: true, files: true, input: true, tty: true };
    const QEMU_GA: Caps = Caps { ext: false, files: true, input: false, tty: false };

    fn args(program: &str, args: &[&str]) -> ExecArgs {
        ExecArgs { program: program.into(), args: args.iter().map(|a| a.to_string()).collect(), ..ExecArgs::default() }
    }

    #[test]
    fn plain_program() {
        let a = args("uname", &["-a"]);
        assert_eq!(
            exec_request(&a, &QGA, &Input::None, true, None),
            json!({"path": "uname", "arg": ["-a"], "capture-output": true, "stream": true})
        );
        assert_eq!(
            exec_request(&a, &QEMU_GA, &Input::None, false, None),
            json!({"path": "uname", "arg": ["-a"], "capture-output": true})
        );
        // --poll with qga: no stream, extensions still sent.
        let a = ExecArgs { timeout: Some(1.5), merge: true, env: vec!["A=1".into()], ..args("true", &[]) };
        assert_eq!(
            exec_request(&a, &QGA, &Input::Data(vec![1]), false, None),
            json!({"path": "true", "env": ["A=1"], "capture-output": "merged", "timeout": 1.5})
        );
    }

    #[test]
    fn extensions_only_for_qga() {
        let a = ExecArgs {
            cwd: Some("/srv".into()),
            user: Some("www".into()),
            profile: Some("diag".into()),
            timeout: Some(60.0),
            ..args("ls", &[])
        };
        assert_eq!(
            exec_request(&a, &QGA, &Input::None, true, None),
            json!({"path": "ls", "capture-output": true, "stream": true, "timeout": 60.0, "cwd": "/srv", "user": "www",
                   "profile": "diag"})
        );
        assert_eq!(
            exec_request(&a, &QEMU_GA, &Input::None, false, None),
            json!({"path": "ls", "capture-output": true})
        );
    }

    #[test]
    fn streamed_stdin_and_terminal() {
        let pump = crate::input::Pump::start(Box::new(std::io::empty())).unwrap();
        let input = Input::Stream(pump);
        let a = args("cat", &[]);
        assert_eq!(
            exec_request(&a, &QGA, &input, true, Some((24, 80))),
            json!({"path": "cat", "capture-output": true, "stream": true, "input-stream": true})
        );
        let a = ExecArgs { tty: true, ..args("top", &[]) };
        assert_eq!(
            exec_request(&a, &QGA, &input, true, Some((50, 132))),
            json!({"path": "top", "tty": true, "rows": 50, "cols": 132})
        );
        assert_eq!(exec_request(&a, &QGA, &Input::None, true, None), json!({"path": "top", "tty": true}));
    }

    #[test]
    fn wrappers_for_staged_stdin_and_shell() {
        let staged = Input::Staged { dir: "/tmp/qgactl-ab".into(), file: "/tmp/qgactl-ab/stdin".into() };
        let a = args("sha256sum", &["-b"]);
        assert_eq!(
            exec_request(&a, &QEMU_GA, &staged, false, None),
            json!({"path": "/bin/sh", "arg": ["-c", STAGE_SCRIPT, "/tmp/qgactl-ab/stdin", "sha256sum", "-b"], "capture-output": true})
        );
        let a = ExecArgs { shell: true, tty: true, user: Some("alice".into()), ..args("/bin/sh", &[]) };
        assert_eq!(
            exec_request(&a, &QGA, &Input::None, true, None),
            json!({"path": "/bin/sh", "arg": ["-c", SHELL_SCRIPT, "qgactl-shell"], "tty": true, "user": "alice"})
        );
    }
}
