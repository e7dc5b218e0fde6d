use super::*;

fn doc(name: &str) -> String {
    format!(
        "apiVersion: zt.hanzo.ai/v1alpha1\nkind: WireGuardPeer\nmetadata: {{ name: {name} }}\nspec:\n  cluster: {name}\n  publicKey: \"HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=\"\n  allowedIPs: [\"10.2.0.0/16\"]\n"
    )
}

#[test]
fn reads_yaml_files_in_name_order_and_skips_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("b.yaml"), doc("b")).expect("write");
    fs::write(dir.path().join("a.yml"), doc("a")).expect("write");
    fs::write(dir.path().join("notes.txt"), "ignored").expect("write");
    fs::write(dir.path().join(".hidden.yaml"), "ignored: [").expect("write");
    fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
    let decls = DirectorySource::new(dir.path()).scan().expect("scan");
    let origins: Vec<String> = decls
        .iter()
        .map(|d| match d {
            Declaration::Peer(p) => p.origin.clone(),
            Declaration::Unreadable { origin, .. } => origin.clone(),
        })
        .collect();
    assert_eq!(origins, ["a.yml", "b.yaml"]);
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
