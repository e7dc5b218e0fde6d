use super::*;

fn doc(name: &str) -> String {
    format!(
        "apiVersion: zt.hanzo.ai/v1alpha1\nkind: WireGuardPeer\nmetadata: {{ name: {name} }}\nspec:\n  cluster: {name}\n  publicKey: \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"\n  allowedIPs: [\"10.2.0.0/16\"]\n"
    )
}

fn origins(decls: &[Declaration]) -> Vec<String> {
    decls
        .iter()
        .map(|d| match d {
            Declaration::Peer(p) => p.origin.clone(),
            Declaration::Unreadable { origin, .. } => origin.clone(),
        })
        .collect()
}

fn unreadable(decls: &[Declaration], name: &str) -> String {
    decls
        .iter()
        .find_map(|d| match d {
            Declaration::Unreadable { origin, reason } if origin == name => Some(reason.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{name} is not unreadable: {decls:?}"))
}

#[test]
fn reads_yaml_files_in_name_order_and_skips_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("b.yaml"), doc("b")).expect("write");
    fs::write(dir.path().join("a.yml"), doc("a")).expect("write");
    fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    fs::write(dir.path().join(".hidden.yaml"), "ignored: [").expect("write");
    let decls = DirectorySource::new(dir.path()).scan().expect("scan");
    assert_eq!(origins(&decls), ["a.yml", "b.yaml"]);
}

const MARKER: &str = "c2VjcmV0LW1hcmtlci0xMjM0NTY3ODkwYWJjZGVmZ2g=";

#[test]
fn a_link_out_of_the_directory_is_reported_unread() {
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("private.key");
    fs::write(&secret, format!("{MARKER}\n")).expect("write");
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(&secret, dir.path().join("key.yaml")).expect("symlink");
    // A relative link that climbs out is refused as well.
    std::os::unix::fs::symlink(
        Path::new("..")
            .join(outside.path().file_name().expect("name"))
            .join("private.key"),
        dir.path().join("up.yaml"),
    )
    .expect("symlink");
    fs::write(dir.path().join("c.yaml"), doc("c")).expect("write");
    let decls = DirectorySource::new(dir.path()).scan().expect("scan");
    assert_eq!(origins(&decls), ["c.yaml", "key.yaml", "up.yaml"]);
    for name in ["key.yaml", "up.yaml"] {
        let reason = unreadable(&decls, name);
        assert!(reason.contains("symbolic link"), "{reason}");
        assert!(reason.contains("outside"), "{reason}");
    }
    assert!(!format!("{decls:?}").contains("c2VjcmV0"), "{decls:?}");
}

#[test]
fn links_within_the_directory_are_followed_as_a_configmap_mount_makes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("..2026_01_01_00_00_00.1");
    fs::create_dir(&data).expect("mkdir");
    fs::write(data.join("b.yaml"), doc("b")).expect("write");
    std::os::unix::fs::symlink("..2026_01_01_00_00_00.1", dir.path().join("..data"))
        .expect("symlink");
    std::os::unix::fs::symlink("..data/b.yaml", dir.path().join("b.yaml")).expect("symlink");
    let decls = DirectorySource::new(dir.path()).scan().expect("scan");
    assert!(
        matches!(&decls[..], [Declaration::Peer(p)] if p.origin == "b.yaml"),
        "{decls:?}"
    );
}

#[test]
fn entries_that_are_not_regular_files_are_reported_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
    nix::unistd::mkfifo(
        &dir.path().join("fifo.yaml"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .expect("mkfifo");
    std::os::unix::fs::symlink("sub.yaml", dir.path().join("link.yaml")).expect("symlink");
    std::os::unix::fs::symlink("absent", dir.path().join("dangling.yaml")).expect("symlink");
    fs::write(dir.path().join("c.yaml"), doc("c")).expect("write");
    // A FIFO is never opened for reading: the scan would block on it.
    let decls = DirectorySource::new(dir.path()).scan().expect("scan");
    assert_eq!(
        origins(&decls),
        [
            "c.yaml",
            "dangling.yaml",
            "fifo.yaml",
            "link.yaml",
            "sub.yaml"
        ]
    );
    for name in ["fifo.yaml", "link.yaml", "sub.yaml"] {
        let reason = unreadable(&decls, name);
        assert!(reason.contains("not a regular file"), "{name}: {reason}");
    }
    assert!(unreadable(&decls, "dangling.yaml").contains("does not resolve"));
}

#[test]
fn missing_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = DirectorySource::new(dir.path().join("absent"))
        .scan()
        .expect_err("missing");
    assert!(err.to_string().contains("peers.path"));
}

#[test]
fn binary_file_is_unreadable_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("bin.yaml"), [0xff, 0xfe, 0x00]).expect("write");
    fs::write(dir.path().join("c.yaml"), doc("c")).expect("write");
    let decls = DirectorySource::new(dir.path()).scan().expect("scan");
    assert_eq!(decls.len(), 2);
    assert!(matches!(&decls[0], Declaration::Unreadable { origin, .. } if origin == "bin.yaml"));
}
