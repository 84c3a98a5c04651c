//! `cairn tls init`: a development CA and certificates for a local cluster, so TLS can be tried
//! in three commands. Production clusters should use certificates from their own CA.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cairn_node::tls::{DevCa, Identity};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a development CA (`ca.crt`), a certificate per node (`node-N.crt`/`node-N.key`,
    /// valid for serving and for calling other nodes) and a client certificate
    /// (`client.crt`/`client.key`) into DIR.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory for the files; created if missing. Existing files are never overwritten.
    dir: PathBuf,
    /// Node certificates to make: node-1 … node-N.
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// Host names and IP addresses every node certificate is valid for (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1,localhost")]
    hosts: Vec<String>,
}

pub fn run(command: TlsCommand) -> ExitCode {
    let TlsCommand::Init(args) = command;
    match init(&args) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cairn tls init: {error}");
            ExitCode::from(1)
        }
    }
}

fn init(args: &InitArgs) -> Result<Vec<PathBuf>, String> {
    if args.nodes == 0 {
        return Err("--nodes must be at least 1".to_string());
    }
    write_dev_certificates(&args.dir, args.nodes, &args.hosts)
}

/// Writes `ca.crt`, `node-1.*` … `node-<nodes>.*` (valid for `hosts`) and `client.*` into `dir`,
/// creating it; refuses before writing anything if one of the files exists. The paths written.
pub fn write_dev_certificates(dir: &Path, nodes: u32, hosts: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
    let ca = DevCa::new("cairn development CA").map_err(|e| e.to_string())?;
    files.push(("ca.crt".to_string(), ca.cert_pem().as_bytes().to_vec(), false));
    let mut push = |name: &str, identity: Identity| {
        files.push((format!("{name}.crt"), identity.cert_pem, false));
        files.push((format!("{name}.key"), identity.key_pem, true));
    };
    for node in 1..=nodes {
        let name = format!("node-{node}");
        push(&name, ca.node(&name, hosts).map_err(|e| e.to_string())?);
    }
    push("client", ca.client("client").map_err(|e| e.to_string())?);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Check every name first, so a refusal leaves nothing half-written.
    for (name, _, _) in &files {
        let path = dir.join(name);
        if path.exists() {
            return Err(format!("{} exists; choose another directory or remove it", path.display()));
        }
    }
    files.iter().map(|(name, bytes, secret)| write_new(&dir.join(name), bytes, *secret)).collect()
}

/// Writes a new file; a private key is readable by its owner only.
fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<PathBuf, String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}
