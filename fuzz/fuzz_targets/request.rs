//! The request path without side effects: framer → `parse_request` →
//! argument decoding through `protocol::Args` with every command's schema
//! (qemu-ga's members in schema order, then qga's extensions, as the
//! handlers in src/commands/ visit them) → base64 decoding of payloads →
//! reply/error encoding. The handlers themselves touch the system, so
//! their visiting code is mirrored here member for member.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga_protocol::json::{Frame, Framer, Value};
use qga_protocol::protocol::{encode_error, encode_reply, parse_request, qbase64_decode, Args, QgaError};

type R = Result<(), QgaError>;

fn b64(v: Option<String>) -> R {
    if let Some(s) = v {
        let max = s.len() / 4 * 3 + 3;
        let bytes = qbase64_decode(s)?;
        assert!(bytes.len() <= max);
    }
    Ok(())
}

/// Decodes `a` as command `name` would; unknown commands decode nothing.
fn decode(name: &str, mut a: Args) -> R {
    match name {
        "guest-sync" | "guest-sync-delimited" => {
            a.req_int("id")?;
        }
        "guest-set-time" => {
            a.opt_int("time")?;
        }
        "guest-shutdown" => {
            a.opt_str("mode")?;
        }
        "guest-file-open" => {
            a.req_str("path")?;
            a.opt_str("mode")?;
        }
        "guest-file-close" | "guest-file-flush" => {
            a.req_int("handle")?;
        }
        "guest-file-read" => {
            a.req_int("handle")?;
            a.opt_int("count")?;
        }
        "guest-file-write" => {
            a.req_int("handle")?;
            let data = a.req_str("buf-b64")?;
            a.opt_int("count")?;
            a.finish()?;
            return b64(Some(data));
        }
        "guest-file-seek" => {
            a.req_int("handle")?;
            a.req_int("offset")?;
            a.req_value("whence")?;
        }
        "guest-fsfreeze-freeze-list" => {
            a.opt_str_list("mountpoints")?;
        }
        "guest-fstrim" => {
            a.opt_int("minimum")?;
        }
        "guest-set-vcpus" => {
            a.req_struct_list("vcpus", |e| {
                e.req_int("logical-id")?;
                e.req_bool("online")?;
                e.opt_bool("can-offline")?;
                Ok(())
            })?;
        }
        "guest-set-memory-blocks" => {
            a.req_struct_list("mem-blks", |e| {
                e.req_uint64("phys-index")?;
                e.req_bool("online")?;
                e.opt_bool("can-offline")?;
                Ok(())
            })?;
        }
        "guest-set-user-password" => {
            a.req_str("username")?;
            let password = a.req_str("password")?;
            a.req_bool("crypted")?;
            a.finish()?;
            return b64(Some(password));
        }
        "guest-ssh-get-authorized-keys" => {
            a.req_str("username")?;
        }
        "guest-ssh-add-authorized-keys" => {
            a.req_str("username")?;
            a.req_str_list("keys")?;
            a.opt_bool("reset")?;
        }
        "guest-ssh-remove-authorized-keys" => {
            a.req_str("username")?;
            a.req_str_list("keys")?;
        }
        "guest-exec" => {
            a.req_str("path")?;
            a.opt_str_list("arg")?;
            a.opt_str_list("env")?;
            let input = a.opt_str("input-data")?;
            a.opt_value("capture-output");
            a.opt_str("cwd")?;
            a.opt_str("user")?;
            a.opt_number("timeout")?;
            a.opt_bool("stream")?;
            a.opt_bool("input-stream")?;
            a.finish()?;
            return b64(input);
        }
        "guest-exec-status" => {
            a.req_int("pid")?;
            a.opt_number("wait")?;
        }
        "guest-exec-input" => {
            a.req_int("pid")?;
            let input = a.opt_str("input-data")?;
            a.opt_bool("eof")?;
            a.finish()?;
            return b64(input);
        }
        "guest-exec-terminate" => {
            a.req_int("pid")?;
            a.opt_value("signal");
        }
        _ => {}
    }
    a.finish()
}

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::new();
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (used, frame) = framer.feed(rest);
        rest = &rest[used..];
        out.clear();
        match frame {
            Some(Frame::Message(msg)) => match parse_request(msg) {
                Ok(req) => match decode(&req.command, Args::new(req.arguments)) {
                    Ok(()) => encode_reply(&mut out, Value::empty_object(), req.id),
                    Err(e) => encode_error(&mut out, &e, req.id),
                },
                Err((e, id)) => encode_error(&mut out, &e, id),
            },
            Some(Frame::Error(desc)) => encode_error(&mut out, &QgaError::generic(desc), None),
            None => break,
        }
        assert!(out.ends_with(b"\n") && out.is_ascii());
    }
});
