//! Runs files (crash artifacts, corpus entries) through a target's checks without
//! libFuzzer, for a readable panic message and backtrace:
//!
//!     cd fuzz && cargo run --example replay -- decode artifacts/decode/crash-...
//!     cd fuzz && cargo run --example replay -- session corpus/session/

use std::path::Path;

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args
        .next()
        .expect("usage: replay decode|session FILE|DIR...");
    let run: fn(&[u8]) = match target.as_str() {
        "decode" => brindle_bgp_fuzz::fuzz_decode,
        "session" => brindle_bgp_fuzz::fuzz_session,
        t => panic!("unknown target {t}"),
    };
    let mut n = 0;
    for a in args {
        let p = Path::new(&a);
        let files: Vec<_> = if p.is_dir() {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        } else {
            vec![p.to_path_buf()]
        };
        for f in files {
            let data = std::fs::read(&f).unwrap();
            eprintln!(
                "{} ({} bytes): {:02x?}",
                f.display(),
                data.len(),
                &data[..data.len().min(64)]
            );
            run(&data);
            n += 1;
        }
    }
    println!("{n} inputs passed");
}
