//! Resynchronising: 0xFF + guest-sync-delimited with a random id.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::io::FillError;
use super::{random_id, Session};

impl Session {
    /// 0xFF + guest-sync-delimited with a random id; everything up to the
    /// 0xFF that precedes the matching reply is discarded (stale replies,
    /// qemu-ga's parse error for our 0xFF). Resent with a new id, with
    /// growing intervals, until `deadline`.
    pub(super) fn sync(&mut self, deadline: Instant) -> std::result::Result<(), SyncError> {
        let mut per_try = Duration::from_millis(500);
        loop {
            let id = random_id();
            let mut msg = vec![0xFFu8];
            msg.extend(
                serde_json::to_vec(&json!({"execute": "guest-sync-delimited", "arguments": {"id": id}}))
                    .unwrap_or_default(),
            );
            msg.push(b'\n');
            self.write_all(&msg, deadline).map_err(|f| SyncError::Closed(f.to_string()))?;
            let try_deadline = (Instant::now() + per_try).min(deadline);
            let mut dl = deadline;
            let mut seeking = true;
            loop {
                if seeking && self.rx.skip_past_ff() {
                    seeking = false;
                }
                if !seeking {
                    if let Some(line) = self.rx.take_line() {
                        let got = serde_json::from_slice::<Value>(&line)
                            .ok()
                            .and_then(|v| v.get("return").and_then(Value::as_i64));
                        if got == Some(id) {
                            self.sync_id = id;
                            return Ok(());
                        }
                        seeking = true;
                        continue;
                    }
                }
                match self.fill(&mut dl, Some(try_deadline), false) {
                    Ok(true) => {}
                    Ok(false) | Err(FillError::Timeout) => break,
                    Err(FillError::Closed) => return Err(SyncError::Closed("connection closed by the agent".into())),
                    Err(FillError::Other(m)) => return Err(SyncError::Closed(m)),
                }
            }
            if Instant::now() >= deadline {
                return Err(SyncError::Timeout);
            }
            per_try = (per_try * 2).min(Duration::from_secs(4));
        }
    }
}

pub(super) enum SyncError {
    Timeout,
    Closed(String),
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::super::test_pair;
    use super::*;

    #[test]
    fn stale_output_before_the_ff_is_discarded() {
        let (mut s, agent) = test_pair(Duration::from_secs(5));
        let mut w = agent.try_clone().unwrap();
        // Left over from an earlier client.
        w.write_all(b"{\"return\": 99}\n{\"return\": {\"pid\"").unwrap();
        let peer = std::thread::spawn(move || {
            let mut r = BufReader::new(agent);
            let mut req = Vec::new();
            r.read_until(b'\n', &mut req).unwrap();
            assert_eq!(req[0], 0xFF);
            let v: Value = serde_json::from_slice(&req[1..]).unwrap();
            assert_eq!(v["execute"], "guest-sync-delimited");
            let id = v["arguments"]["id"].as_i64().unwrap();
            // qemu-ga's parse error for the 0xFF, a wrong id behind a 0xFF,
            // then the answer, then a reply to what comes next.
            let answer = format!(
                "{{\"error\": {{\"class\": \"GenericError\", \"desc\": \"Invalid JSON syntax\"}}}}\n\u{1}{{\"return\": {}}}\n\u{1}{{\"return\": {id}}}\n{{\"return\": \"next\"}}\n",
                id ^ 1
            );
            // (\u{1} stands for 0xFF, which a str cannot hold.)
            let answer: Vec<u8> = answer.bytes().map(|b| if b == 1 { 0xFF } else { b }).collect();
            w.write_all(&answer).unwrap();
            id
        });
        s.sync(Instant::now() + Duration::from_secs(5)).map_err(|_| "sync failed").unwrap();
        let id = peer.join().unwrap();
        assert_eq!(s.sync_id, id);
        assert_eq!(s.read_line(Duration::from_secs(1)).unwrap(), b"{\"return\": \"next\"}");
    }
}
