//! The core must stay free of IO: no runtime, kube, HTTP, sockets, WireGuard implementations.

use std::fs;
use std::path::Path;

#[test]
fn core_imports_no_io_crates() {
    let forbidden = [
        "tokio::",
        "kube::",
        "reqwest::",
        "defguard_",
        "boringtun::",
        "rtnetlink::",
        "axum::",
        "UdpSocket",
        "TcpStream",
        "UnixStream",
        "std::fs",
        "std::process",
        "Instant::now",
        "SystemTime::now",
        "std::os::unix",
        "std::env",
    ];
    // The core, and the parts of the shared model it re-exports (`gateway/model`; its `crd`
    // module derives the resource with kube's macros, which is not IO).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/core");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("model/src");
    let mut files = vec![dir.with_extension("rs")];
    for module in ["key", "peer", "psk", "validate", "status"] {
        files.push(model.join(module).with_extension("rs"));
    }
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("read core dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.ends_with("boundary_tests.rs")
            {
                files.push(path);
            }
        }
    }
    for file in files {
        let text = fs::read_to_string(&file).expect("read source");
        for word in forbidden {
            assert!(
                !text.contains(word),
                "{} mentions {word}: the core must not do IO",
                file.display()
            );
        }
    }
}
