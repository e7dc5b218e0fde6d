//! `crdgen`: prints the `WireGuardPeer` CustomResourceDefinition as YAML, or writes it to
//! `manifests/crds/wireguardpeers.zt.hanzo.ai.yaml` with `--write DIR`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match gateway::crd_yaml() {
        Ok(yaml) => yaml,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        (Some("--write"), Some(dir)) => {
            let path = std::path::Path::new(&dir).join(gateway::CRD_FILE);
            match std::fs::write(&path, yaml) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("crdgen: cannot write {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("usage: crdgen [--write DIR]");
            ExitCode::from(2)
        }
    }
}
