use std::time::Duration;

use super::*;

const EMBEDDED: &str = r#"
[interface]
name = "wg0"
listen_port = 51820
address = "10.10.0.1/24"
mtu = 1420
backend = "userspace"

[cluster]
name = "hanzo-k8s"

[key]
source = "file"
path = "/etc/zt-gateway/private.key"   # base64, as `wg genkey` writes it; mode 0600

[peers]
source = "directory"
path = "/etc/zt-gateway/peers"          # *.yaml, one or more WireGuardPeer documents each

[http]
listen = "127.0.0.1:8055"
admin_socket = "/run/zt-gateway/admin.sock"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "gateway.toml", &Overrides::default())
}

#[test]
fn embedded_default_parses() {
    let config = parse(EMBEDDED).expect("valid");
    assert_eq!(config.interface.name, "wg0");
    assert_eq!(config.interface.listen_port, 51820);
    assert_eq!(config.interface.mtu, 1420);
    assert_eq!(config.backend, Backend::Userspace);
    assert_eq!(config.cluster_name, "hanzo-k8s");
    assert!(
        matches!(&config.key, KeyConfig::File { path } if path == std::path::Path::new("/etc/zt-gateway/private.key"))
    );
    assert_eq!(config.http.listen, "127.0.0.1:8055".parse().expect("addr"));
    assert_eq!(
        config.tunnel_address(),
        "10.10.0.1".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn invalid_address_names_key_and_value() {
    let err = parse(&EMBEDDED.replace("10.10.0.1/24", "10.10.0.300/24")).expect_err("bad");
    let msg = err.to_string();
    assert!(
        msg.starts_with("interface.address = \"10.10.0.300/24\""),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
}

#[test]
fn network_address_is_not_a_gateway_address() {
    let err = parse(&EMBEDDED.replace("10.10.0.1/24", "10.10.0.0/24")).expect_err("bad");
    assert!(err.to_string().contains("network address"));
}

#[test]
fn unknown_key_is_an_error_on_one_line() {
    let err = parse(&EMBEDDED.replace("mtu = 1420", "mtu = 1420\nmtuu = 1")).expect_err("bad");
    let msg = err.to_string();
    assert!(msg.contains("unknown field `mtuu`"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn syntax_error_reports_the_line() {
    let err = parse("[interface\nname = 1").expect_err("bad");
    let msg = err.to_string();
    assert!(msg.contains("line 1"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn port_out_of_range_is_rejected() {
    let err = parse(&EMBEDDED.replace("51820", "70000")).expect_err("bad");
    assert!(
        err.to_string()
            .starts_with("interface.listen_port = \"70000\"")
    );
}

#[test]
fn overrides_win_over_the_file() {
    let overrides = Overrides {
        interface_name: Some("zt7".to_owned()),
        interface_listen_port: Some("51999".to_owned()),
        peers_path: Some("/tmp/peers".to_owned()),
        ..Overrides::default()
    };
    let config = Config::parse(EMBEDDED, "gateway.toml", &overrides).expect("valid");
    assert_eq!(config.interface.name, "zt7");
    assert_eq!(config.interface.listen_port, 51999);
    assert_eq!(
        config.peers,
        PeersConfig::Directory {
            path: "/tmp/peers".into()
        }
    );
}

#[test]
fn non_numeric_port_override_is_rejected() {
    let overrides = Overrides {
        interface_listen_port: Some("http".to_owned()),
        ..Overrides::default()
    };
    let err = Config::parse(EMBEDDED, "gateway.toml", &overrides).expect_err("bad");
    assert!(
        err.to_string()
            .starts_with("interface.listen_port = \"http\"")
    );
}

#[test]
fn missing_required_keys_are_named() {
    let err = parse("[cluster]\nname = \"a\"\n").expect_err("bad");
    assert!(err.to_string().starts_with("interface.address"));
    let err = parse("[interface]\naddress = \"10.10.0.1/24\"\n").expect_err("bad");
    assert!(err.to_string().starts_with("cluster.name"));
}

const KUBERNETES_PEERS: &str = "[peers]\nsource = \"kubernetes\"\nnamespace = \"zt-system\"\nkubeconfig = \"/etc/zt-gateway/kubeconfig\"\n";

fn with_peers(peers: &str) -> String {
    let start = EMBEDDED.find("[peers]").expect("peers section");
    let end = EMBEDDED.find("[http]").expect("http section");
    format!("{}{peers}\n{}", &EMBEDDED[..start], &EMBEDDED[end..])
}

#[test]
fn kubernetes_source_takes_namespace_and_kubeconfig() {
    let config = parse(&with_peers(KUBERNETES_PEERS)).expect("valid");
    assert_eq!(
        config.peers,
        PeersConfig::Kubernetes {
            namespace: Some("zt-system".to_owned()),
            kubeconfig: Some("/etc/zt-gateway/kubeconfig".into()),
        }
    );
    let bare = parse(&with_peers("[peers]\nsource = \"kubernetes\"\n")).expect("valid");
    assert_eq!(
        bare.peers,
        PeersConfig::Kubernetes {
            namespace: None,
            kubeconfig: None,
        }
    );
}

#[test]
fn keys_of_the_other_peer_source_are_refused() {
    let err = parse(&with_peers(
        "[peers]\nsource = \"kubernetes\"\npath = \"/x\"\n",
    ))
    .expect_err("bad");
    assert!(err.to_string().starts_with("peers.path"), "{err}");
    let err = parse(&with_peers(
        "[peers]\nsource = \"directory\"\nkubeconfig = \"/k\"\n",
    ))
    .expect_err("bad");
    assert!(err.to_string().starts_with("peers.kubeconfig"), "{err}");
    let err = parse(&with_peers("[peers]\nnamespace = \"zt\"\n")).expect_err("bad");
    assert!(err.to_string().starts_with("peers.namespace"), "{err}");
}

#[test]
fn bad_namespace_is_named() {
    let err = parse(&with_peers(
        "[peers]\nsource = \"kubernetes\"\nnamespace = \"ZT_System\"\n",
    ))
    .expect_err("bad");
    assert!(
        err.to_string()
            .starts_with("peers.namespace = \"ZT_System\""),
        "{err}"
    );
}

#[test]
fn peer_source_can_be_switched_by_override() {
    let overrides = Overrides {
        peers_source: Some("kubernetes".to_owned()),
        peers_namespace: Some("gw".to_owned()),
        ..Overrides::default()
    };
    let text = with_peers("[peers]\n");
    let config = Config::parse(&text, "gateway.toml", &overrides).expect("valid");
    assert_eq!(
        config.peers,
        PeersConfig::Kubernetes {
            namespace: Some("gw".to_owned()),
            kubeconfig: None,
        }
    );
}

#[test]
fn bad_interface_name_is_rejected() {
    let err = parse(&EMBEDDED.replace("name = \"wg0\"", "name = \"a-name-far-too-long\""))
        .expect_err("bad");
    assert!(err.to_string().starts_with("interface.name"));
}

const KMS: &str = r#"
[interface]
address = "10.10.0.1/24"

[cluster]
name = "hanzo-k8s"

[key]
source = "kms"
backend = "infisical"
url = "https://kms.hanzo.ai/"
project_id = "p-123"
environment = "prod"
secret_path = "/zt-gateway"
secret_name = "wg-private-key"
client_id_file = "/var/run/secrets/kms/client-id"
client_secret_file = "/var/run/secrets/kms/client-secret"
deadline = "90s"
cache_path = "/var/lib/zt-gateway/key.sealed"
cache_kek_file = "/var/run/secrets/kek/kek"
"#;

#[test]
fn kms_section_parses_with_defaults() {
    let config = parse(KMS).expect("valid");
    let KeyConfig::Kms(kms) = config.key else {
        panic!("not kms");
    };
    assert_eq!(kms.store.url, "https://kms.hanzo.ai");
    assert_eq!(kms.store.api, kms_client::infisical::ApiVersion::V4);
    assert_eq!(kms.secret_name, "wg-private-key");
    assert_eq!(kms.deadline, Duration::from_secs(90));
    assert_eq!(kms.store.request_timeout, Duration::from_secs(10));
    let cache = kms.cache.expect("cache");
    assert_eq!(cache.max_age, Duration::from_secs(86_400));
}

#[test]
fn kms_requires_its_keys() {
    let err = parse(&KMS.replace("project_id = \"p-123\"\n", "")).expect_err("bad");
    assert!(err.to_string().starts_with("key.project_id"), "{err}");
    let err = parse(&KMS.replace("secret_name = \"wg-private-key\"\n", "")).expect_err("bad");
    assert!(err.to_string().starts_with("key.secret_name"), "{err}");
}

#[test]
fn cache_needs_both_path_and_kek() {
    let err = parse(&KMS.replace("cache_kek_file = \"/var/run/secrets/kek/kek\"\n", ""))
        .expect_err("bad");
    assert!(err.to_string().starts_with("key.cache_kek_file"), "{err}");
}

#[test]
fn bad_duration_is_named() {
    let err = parse(&KMS.replace("\"90s\"", "\"soon\"")).expect_err("bad");
    assert!(
        err.to_string().starts_with("key.deadline = \"soon\""),
        "{err}"
    );
}

#[test]
fn admin_tcp_listener_needs_a_token_file() {
    let text = EMBEDDED.replace(
        "admin_socket = \"/run/zt-gateway/admin.sock\"",
        "admin_socket = \"/run/zt-gateway/admin.sock\"\nadmin_listen = \"127.0.0.1:8056\"",
    );
    let err = parse(&text).expect_err("no token file");
    assert!(
        err.to_string()
            .starts_with("http.admin_listen = \"127.0.0.1:8056\""),
        "{err}"
    );
    assert!(err.to_string().contains("admin_token_file"), "{err}");

    let with_token = text.replace(
        "admin_listen",
        "admin_token_file = \"/etc/zt-gateway/admin.token\"\nadmin_listen",
    );
    let config = parse(&with_token).expect("valid");
    assert_eq!(
        config.http.admin_tcp,
        Some(AdminTcp {
            listen: "127.0.0.1:8056".parse().expect("addr"),
            token_file: "/etc/zt-gateway/admin.token".into(),
        })
    );
}

#[test]
fn admin_token_file_alone_is_an_error() {
    let text = EMBEDDED.replace(
        "admin_socket = \"/run/zt-gateway/admin.sock\"",
        "admin_token_file = \"/t\"",
    );
    let err = parse(&text).expect_err("token without listener");
    assert!(
        err.to_string().starts_with("http.admin_token_file"),
        "{err}"
    );
}

#[test]
fn kms_keys_with_the_file_source_are_refused() {
    let err = parse(&EMBEDDED.replace(
        "source = \"file\"",
        "source = \"file\"\nurl = \"https://x\"",
    ))
    .expect_err("bad");
    assert!(err.to_string().starts_with("key.url"), "{err}");
}

#[test]
fn admin_listener_cannot_share_the_metrics_listener() {
    let text = EMBEDDED.replace(
        "admin_socket = \"/run/zt-gateway/admin.sock\"",
        "admin_listen = \"127.0.0.1:8055\"\nadmin_token_file = \"/t\"",
    );
    let err = parse(&text).expect_err("same address");
    assert!(err.to_string().contains("must differ"), "{err}");
}

#[test]
fn production_liveness_unless_the_hidden_test_flag_is_given() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, EMBEDDED).expect("write");
    let config_arg = path.to_string_lossy().into_owned();

    let cli = Cli::try_parse_from(["gateway", "--config", &config_arg]).expect("cli");
    let config = Config::from_cli(&cli).expect("valid");
    assert_eq!(config.liveness, Liveness::default());

    let cli = Cli::try_parse_from([
        "gateway",
        "--config",
        &config_arg,
        "--test-peer-receive-window",
        "3",
    ])
    .expect("cli");
    let config = Config::from_cli(&cli).expect("valid");
    assert_eq!(
        config.liveness.receive_window,
        Some(std::time::Duration::from_secs(3))
    );

    let cli = Cli::try_parse_from([
        "gateway",
        "--config",
        &config_arg,
        "--test-peer-receive-window",
        "0",
    ])
    .expect("cli");
    assert!(Config::from_cli(&cli).is_err());
}

#[test]
fn native_is_another_name_for_the_userspace_backend() {
    let config =
        parse(&EMBEDDED.replace("backend = \"userspace\"", "backend = \"native\"")).expect("valid");
    assert_eq!(config.backend, Backend::Userspace);
    let overrides = Overrides {
        interface_backend: Some("native".to_owned()),
        ..Overrides::default()
    };
    let config = Config::parse(EMBEDDED, "gateway.toml", &overrides).expect("valid");
    assert_eq!(config.backend, Backend::Userspace);
    let err = parse(&EMBEDDED.replace("backend = \"userspace\"", "backend = \"fast\""))
        .expect_err("unknown backend");
    assert!(err.to_string().contains("\"native\""), "{err}");
}

#[test]
fn huge_durations_are_one_line_errors_not_panics() {
    for (key, line) in [
        ("key.deadline", "deadline = \"90s\"\n"),
        ("key.request_timeout", "request_timeout = \"10s\"\n"),
        ("key.cache_max_age", "cache_max_age = \"24h\"\n"),
    ] {
        let field = line.split(' ').next().expect("field");
        let text = if KMS.contains(line) {
            KMS.to_owned()
        } else {
            KMS.replace("[key]\n", &format!("[key]\n{line}"))
        };
        for huge in ["500000000000y", "10000y", "18446744073709551615s"] {
            let config = text.replace(line, &format!("{field} = \"{huge}\"\n"));
            let err = parse(&config).expect_err(huge);
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("{key} = \"{huge}\"")),
                "{message}"
            );
            assert!(message.contains("at most"), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}

#[test]
fn control_section_defaults_to_port_51821_and_is_optional() {
    let config = parse(EMBEDDED).expect("valid");
    assert_eq!(config.control, ControlConfig::default());
    assert!(config.control.enabled);
    assert_eq!(config.control.port, 51821);
    assert_eq!(config.control.hello_interval, Duration::from_secs(30));
}

#[test]
fn control_section_takes_port_interval_and_switch() {
    let text =
        format!("{EMBEDDED}\n[control]\nenabled = false\nport = 7000\nhello_interval = \"5s\"\n");
    let config = parse(&text).expect("valid");
    assert!(!config.control.enabled);
    assert_eq!(config.control.port, 7000);
    assert_eq!(config.control.hello_interval, Duration::from_secs(5));
}

#[test]
fn bad_control_values_are_named() {
    for (line, key) in [
        ("port = 0", "control.port"),
        ("port = 70000", "control.port"),
        ("hello_interval = \"0s\"", "control.hello_interval"),
        ("hello_interval = \"2h\"", "control.hello_interval"),
        ("hello_interval = \"soon\"", "control.hello_interval"),
    ] {
        let text = format!("{EMBEDDED}\n[control]\n{line}\n");
        let error = parse(&text).expect_err(line).to_string();
        assert!(error.starts_with(key), "{line}: {error}");
    }
    let error = parse(&format!("{EMBEDDED}\n[control]\nprot = 1\n"))
        .expect_err("unknown key")
        .to_string();
    assert!(error.contains("prot"), "{error}");
}

#[test]
fn control_overrides_win_over_the_file() {
    let overrides = Overrides {
        control_port: Some("7001".to_owned()),
        control_hello_interval: Some("2s".to_owned()),
        ..Overrides::default()
    };
    let text = format!("{EMBEDDED}\n[control]\nport = 7000\n");
    let config = Config::parse(&text, "gateway.toml", &overrides).expect("valid");
    assert_eq!(config.control.port, 7001);
    assert_eq!(config.control.hello_interval, Duration::from_secs(2));
}

#[test]
fn audit_is_off_without_its_section_and_defaults_with_it() {
    assert_eq!(parse(EMBEDDED).expect("valid").audit, None);
    let config = parse(&format!("{EMBEDDED}\n[audit]\n")).expect("valid");
    assert_eq!(
        config.audit,
        Some(AuditConfig {
            sink: AuditSink::File("/var/lib/zt-gateway/audit.jsonl".into()),
            key: AuditKeySource::File("/etc/zt-gateway/audit.key".into()),
            checkpoint_interval: Duration::from_secs(300),
        })
    );
    let overrides = Overrides {
        audit_path: Some("-".to_owned()),
        ..Overrides::default()
    };
    let config = Config::parse(EMBEDDED, "gateway.toml", &overrides).expect("valid");
    assert_eq!(config.audit.map(|a| a.sink), Some(AuditSink::Stdout));
}

#[test]
fn audit_mistakes_are_named() {
    let cases = [
        ("checkpoint_interval = \"0s\"", "audit.checkpoint_interval"),
        ("checkpoint_interval = \"2d\"", "audit.checkpoint_interval"),
        ("key_source = \"vault\"", "audit.key_source"),
        (
            "key_source = \"kms\"\nkey_secret_name = \"audit\"",
            "audit.key_source",
        ),
        ("key_secret_name = \"audit\"", "audit.key_secret_name"),
        ("colour = \"red\"", "colour"),
    ];
    for (body, named) in cases {
        let error = parse(&format!("{EMBEDDED}\n[audit]\n{body}\n")).expect_err(body);
        assert!(error.to_string().contains(named), "{body}: {error}");
    }
}

#[test]
fn the_shipped_overlay_configurations_parse_with_the_audit_log_on() {
    let overlays = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/overlays");
    let mut seen = 0;
    for entry in std::fs::read_dir(&overlays).expect("overlays") {
        let path = entry.expect("entry").path().join("gateway.toml");
        let text = std::fs::read_to_string(&path).expect("gateway.toml");
        let config = Config::parse(&text, &path.display().to_string(), &Overrides::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let audit = config.audit.expect("the audit log is on");
        assert_eq!(
            audit.sink,
            AuditSink::File("/var/lib/zt-gateway/audit.jsonl".into())
        );
        assert!(
            matches!(audit.key, AuditKeySource::Kms { .. }),
            "{:?}",
            audit.key
        );
        seen += 1;
    }
    assert_eq!(seen, 2);
}
