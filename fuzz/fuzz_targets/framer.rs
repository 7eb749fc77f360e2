//! The framer must give the same frames however the input is split into
//! reads: the first 4 bytes choose the read sizes (1..=256, cycled), the
//! rest is the stream. Every frame is also serialised (the writer must
//! cope with whatever the parser built).
#![no_main]

use libfuzzer_sys::fuzz_target;
use qga_protocol::json::{write_value, Frame, Framer};

fn run(stream: &[u8], sizes: &[usize]) -> Vec<Frame> {
    let mut framer = Framer::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < stream.len() {
        let n = sizes[k % sizes.len()].min(stream.len() - at);
        k += 1;
        let mut piece = &stream[at..at + n];
        at += n;
        while !piece.is_empty() {
            let (used, frame) = framer.feed(piece);
            assert!(used <= piece.len());
            piece = &piece[used..];
            match frame {
                Some(f) => frames.push(f),
                None => assert!(piece.is_empty(), "the framer stopped without a frame"),
            }
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let sizes: Vec<usize> = data[..4].iter().map(|&b| b as usize + 1).collect();
    let mut stream = data[4..].to_vec();
    stream.push(b'\n'); // ends a trailing number or keyword
    let whole = run(&stream, &[stream.len()]);
    let split = run(&stream, &sizes);
    assert_eq!(whole, split, "frames depend on how the input was split");
    let mut out = Vec::new();
    for f in &whole {
        if let Frame::Message(v) = f {
            out.clear();
            write_value(&mut out, v);
            assert!(out.is_ascii(), "the writer emitted non-ASCII");
        }
    }
});
