//! Mutual TLS for native clients: a client certificate of the cluster CA is the identity (the
//! tenant and workload come from its SAN), no access key needed; a server can require one; the
//! refusals users meet say what is wrong; a certificate reaches only its own tenant's files and
//! keys. Real `kiseki-server` and `kiseki-client-fuse` processes, certificates issued with
//! `kiseki-server cluster-ca`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{binary, free_port, is_mounted, Server};
use kiseki_client::{ChannelSecurity, ClientCertificate, GrpcOptions, GrpcTransport, Transport};
use kiseki_types::{ErrorKind, TenantId};

/// A fresh directory under /var/tmp (FUSE mounts do not work on every tmpfs set-up).
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kiseki-mtls-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// A dev server in `dir` (its data in `dir/data`) that asks for client certificates and, with
/// `require`, refuses calls without one.
fn start_server(dir: &Path, require: bool) -> Server {
    let data = dir.join("data");
    let config = dir.join("server.yaml");
    fs::write(
        &config,
        format!(
            "data_dir: {}\nnative_tls:\n  require_client_cert: {require}\n",
            data.display()
        ),
    )
    .unwrap();
    Server::start_with(&data, free_port(), &["--config", config.to_str().unwrap()])
}

/// Runs `kiseki-server cluster-ca ARGS`; panics with its stderr if it fails.
fn cluster_ca(args: &[&str]) -> String {
    let output = Command::new(binary("kiseki-server"))
        .arg("cluster-ca")
        .args(args)
        .env("KISEKI_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cluster-ca {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A client certificate of `tenant`'s `workload` from the CA in `ca_dir`, written to `out`.
fn issue(ca_dir: &Path, tenant: u64, workload: &str, out: &Path) -> (PathBuf, PathBuf) {
    let printed = cluster_ca(&[
        "issue-client-cert",
        "--ca-dir",
        ca_dir.to_str().unwrap(),
        "--tenant",
        &tenant.to_string(),
        "--workload",
        workload,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        printed.contains(&format!("kiseki://tenant/{tenant}/workload/{workload}")),
        "{printed}"
    );
    let stem = format!("client-tenant-{tenant}-{workload}");
    (
        out.join(format!("{stem}.pem")),
        out.join(format!("{stem}.key")),
    )
}

/// A client certificate of tenant 1's `dev` workload valid on 1-2 January 2020 only, signed
/// with `openssl ca` by the CA in `ca_dir`; written to `out`.
fn expired_cert(ca_dir: &Path, out: &Path) -> (PathBuf, PathBuf) {
    fs::create_dir_all(out).unwrap();
    let path = |name: &str| out.join(name);
    fs::write(path("index.txt"), "").unwrap();
    fs::write(path("serial"), "01\n").unwrap();
    fs::write(
        path("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = test\n[test]\ndatabase = {dir}/index.txt\n\
             new_certs_dir = {dir}\nserial = {dir}/serial\ndefault_md = sha256\npolicy = any\n\
             x509_extensions = client\nunique_subject = no\n[any]\ncommonName = supplied\n\
             [client]\nsubjectAltName = URI:kiseki://tenant/1/workload/dev\n\
             extendedKeyUsage = clientAuth\n",
            dir = out.display()
        ),
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let text = |path: PathBuf| path.to_str().unwrap().to_owned();
    let (key, csr, cert) = (
        text(path("expired.key")),
        text(path("expired.csr")),
        text(path("expired.pem")),
    );
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &key,
    ]);
    openssl(&[
        "req",
        "-new",
        "-key",
        &key,
        "-subj",
        "/CN=expired",
        "-out",
        &csr,
    ]);
    openssl(&[
        "ca",
        "-config",
        &text(path("ca.cnf")),
        "-batch",
        "-notext",
        "-in",
        &csr,
        "-cert",
        &text(ca_dir.join("ca.pem")),
        "-keyfile",
        &text(ca_dir.join("ca.key")),
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200102000000Z",
        "-out",
        &cert,
    ]);
    (PathBuf::from(cert), PathBuf::from(key))
}

/// The development client certificate the server issued itself.
fn dev_cert(server: &Server) -> (PathBuf, PathBuf) {
    let dir = server.data_dir.join("tls");
    (
        dir.join("client-tenant-1-dev.pem"),
        dir.join("client-tenant-1-dev.key"),
    )
}

/// A mount command for `server` at `path` with the client certificate `cert` and no access
/// key (the harness's defaults without its keys).
fn cert_mount(server: &Server, path: &Path, cert: Option<&(PathBuf, PathBuf)>) -> Command {
    fs::create_dir_all(path).unwrap();
    let mut command = common::mount_command(server, path);
    command
        .env_remove("KISEKI_ACCESS_KEY")
        .env_remove("KISEKI_SECRET_KEY");
    if let Some((cert, key)) = cert {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command
}

/// A running mount, unmounted and stopped by pid when dropped.
struct Mounted {
    child: Child,
    path: PathBuf,
}

impl Mounted {
    fn start(mut command: Command, path: &Path) -> Mounted {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut mounted = Mounted {
            child,
            path: path.to_owned(),
        };
        loop {
            match receiver.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line == "ready" => return mounted,
                Ok(_) => {}
                Err(_) => {
                    mounted.stop();
                    panic!("the mount at {} did not become ready", path.display());
                }
            }
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if is_mounted(&self.path) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.path)
                .status();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a mount command that must fail within 30 s; returns its stderr.
fn refused(mut command: Command, what: &str) -> String {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what} was accepted: {stderr}");
    stderr
}

/// An in-process transport to `server` with `cert` and, optionally, an access key.
fn transport(
    server: &Server,
    cert: &(PathBuf, PathBuf),
    access_key: Option<(String, String)>,
) -> GrpcTransport {
    let options = GrpcOptions {
        endpoint: server.url(),
        security: ChannelSecurity::Tls {
            ca_pem: fs::read(server.ca_path.as_ref().unwrap()).unwrap(),
            server_name: None,
            client_cert: Some(ClientCertificate {
                cert_pem: fs::read(&cert.0).unwrap(),
                key_pem: fs::read(&cert.1).unwrap(),
            }),
        },
        access_key,
        connect_timeout: Duration::from_secs(3),
        request_timeout: Duration::from_secs(10),
        bulk: false,
    };
    GrpcTransport::connect_lazy(&options).unwrap()
}

#[test]
fn a_client_certificate_is_the_identity_and_can_be_required() {
    let dir = temp_dir();
    let server = start_server(dir.path(), true);
    let banner_cert = dev_cert(&server);
    assert!(banner_cert.0.exists() && banner_cert.1.exists());

    // The dev tenant's certificate alone mounts, writes and reads.
    let path = dir.path().join("mnt");
    let mount = Mounted::start(cert_mount(&server, &path, Some(&banner_cert)), &path);
    fs::write(
        path.join("by-cert.txt"),
        b"written with a client certificate",
    )
    .unwrap();
    assert_eq!(
        fs::read(path.join("by-cert.txt")).unwrap(),
        b"written with a client certificate"
    );
    drop(mount);

    // An access key alone is not enough here.
    let mut command = cert_mount(&server, &dir.path().join("m-key"), None);
    command
        .env("KISEKI_ACCESS_KEY", &server.access_key)
        .env("KISEKI_SECRET_KEY", &server.secret_key);
    let stderr = refused(command, "an access key without a certificate");
    assert!(
        stderr.contains(
            "this server requires a client certificate signed by its cluster CA \
             (kiseki-client-fuse --cert FILE --key FILE); none was presented"
        ),
        "{stderr}"
    );

    // No identity at all is refused before any connection.
    let stderr = refused(
        cert_mount(&server, &dir.path().join("m-none"), None),
        "a mount without an identity",
    );
    assert!(
        stderr.contains("no identity: give --cert FILE --key FILE"),
        "{stderr}"
    );

    // A certificate for the same tenant and workload from another CA.
    let other_ca = dir.path().join("other-ca");
    cluster_ca(&["init", "--dir", other_ca.to_str().unwrap()]);
    let foreign = issue(&other_ca, 1, "dev", &dir.path().join("foreign"));
    let stderr = refused(
        cert_mount(&server, &dir.path().join("m-foreign"), Some(&foreign)),
        "a certificate of another CA",
    );
    assert!(
        stderr
            .contains("the client certificate is not signed by the cluster CA this server trusts"),
        "{stderr}"
    );

    // An expired certificate of the right CA (openssl signs it with the server's CA key).
    let expired = expired_cert(
        &server.data_dir.join("cluster-ca"),
        &dir.path().join("expired"),
    );
    let stderr = refused(
        cert_mount(&server, &dir.path().join("m-expired"), Some(&expired)),
        "an expired certificate",
    );
    assert!(
        stderr.contains(
            "the client certificate of kiseki://tenant/1/workload/dev expired on Jan  2 00:00:00 2020"
        ),
        "{stderr}"
    );

    // A certificate of the right CA without a tenant identity (a node's).
    let ca_dir = server.data_dir.join("cluster-ca");
    let nodes = dir.path().join("node-cert");
    cluster_ca(&[
        "issue-node-cert",
        "--dir",
        ca_dir.to_str().unwrap(),
        "--node-id",
        "7",
        "--out",
        nodes.to_str().unwrap(),
    ]);
    let node = (nodes.join("node-7.pem"), nodes.join("node-7.key"));
    let stderr = refused(
        cert_mount(&server, &dir.path().join("m-node"), Some(&node)),
        "a certificate without a Kiseki identity",
    );
    assert!(
        stderr.contains(
            "carries no Kiseki identity: expected a URI SAN kiseki://tenant/<id>/workload/<name>"
        ),
        "{stderr}"
    );
}

#[test]
fn a_certificate_reaches_only_its_own_tenant() {
    let dir = temp_dir();
    let server = start_server(dir.path(), false);
    let cert_a = dev_cert(&server);
    let cert_b = issue(
        &server.data_dir.join("cluster-ca"),
        2,
        "team-b",
        &dir.path().join("b"),
    );

    let path_a = dir.path().join("mnt-a");
    let path_b = dir.path().join("mnt-b");
    let _mount_a = Mounted::start(cert_mount(&server, &path_a, Some(&cert_a)), &path_a);
    let _mount_b = Mounted::start(cert_mount(&server, &path_b, Some(&cert_b)), &path_b);
    fs::write(path_a.join("a-only.txt"), b"tenant 1").unwrap();
    fs::write(path_b.join("b-only.txt"), b"tenant 2").unwrap();
    let names = |path: &Path| -> Vec<String> {
        fs::read_dir(path)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(names(&path_a), ["a-only.txt"]);
    assert_eq!(names(&path_b), ["b-only.txt"]);
    assert_eq!(
        fs::read(path_a.join("b-only.txt")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );

    // The existing server-auth mode (access key, --ca) still works beside certificates.
    let path_key = dir.path().join("mnt-key");
    let _mount_key = common::Mount::start(&server, &path_key);
    assert_eq!(fs::read(path_key.join("a-only.txt")).unwrap(), b"tenant 1");

    // Tenant 2's access key with tenant 1's certificate is refused, saying why.
    let keys = server.data_dir.join("access-keys.yaml");
    let mut text = fs::read_to_string(&keys).unwrap();
    text.push_str(
        "- access_key_id: KSKTENANTBTESTKEY01\n  secret_access_key: tenant-b-secret\n  \
         tenant: 2\n  workload: team-b\n",
    );
    fs::write(&keys, text).unwrap();
    // The server rereads the key file at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let mut command = cert_mount(&server, &dir.path().join("m-mixed"), Some(&cert_a));
    command
        .env("KISEKI_ACCESS_KEY", "KSKTENANTBTESTKEY01")
        .env("KISEKI_SECRET_KEY", "tenant-b-secret");
    let stderr = refused(command, "tenant 2's key with tenant 1's certificate");
    assert!(
        stderr.contains(
            "the access key is for tenant 2 but the client certificate identifies \
             kiseki://tenant/1/workload/dev (tenant 1)"
        ),
        "{stderr}"
    );

    // Keys: each certificate gets its own tenant's, and only those.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let a = transport(&server, &cert_a, None);
        let b = transport(&server, &cert_b, None);
        assert_eq!(a.hello().await.unwrap().tenant, TenantId(1));
        assert_eq!(b.hello().await.unwrap().tenant, TenantId(2));
        let keys_a = a.tenant_keys(TenantId(1)).await.unwrap();
        let keys_b = b.tenant_keys(TenantId(2)).await.unwrap();
        assert_ne!(*keys_a.addressing, *keys_b.addressing);
        // Asking with A's certificate for B's keys yields A's, which the client refuses.
        assert!(a.tenant_keys(TenantId(2)).await.is_err());

        // The same tenant's key beside the certificate is fine; another tenant's is not.
        let same = transport(
            &server,
            &cert_a,
            Some((server.access_key.clone(), server.secret_key.clone())),
        );
        assert_eq!(same.hello().await.unwrap().tenant, TenantId(1));
        let mixed = transport(
            &server,
            &cert_a,
            Some(("KSKTENANTBTESTKEY01".into(), "tenant-b-secret".into())),
        );
        let error = mixed.tenant_keys(TenantId(2)).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::PermissionDenied, "{error}");
        assert!(
            error.to_string().contains("access key is for tenant 2"),
            "{error}"
        );

        // Figures, not assertions: sequential calls authenticated by certificate (identity
        // cached per certificate) and by access key.
        let key_only = GrpcTransport::connect_lazy(&GrpcOptions {
            endpoint: server.url(),
            security: ChannelSecurity::Tls {
                ca_pem: fs::read(server.ca_path.as_ref().unwrap()).unwrap(),
                server_name: None,
                client_cert: None,
            },
            access_key: Some((server.access_key.clone(), server.secret_key.clone())),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            bulk: false,
        })
        .unwrap();
        for (what, transport) in [("certificate", &a), ("access key", &key_only)] {
            transport.hello().await.unwrap();
            let started = std::time::Instant::now();
            for _ in 0..500 {
                transport.hello().await.unwrap();
            }
            let elapsed = started.elapsed();
            eprintln!(
                "500 hello calls by {what}: {:.0} calls/s ({:.0} us each)",
                500.0 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64() * 1e6 / 500.0
            );
        }
    });
}

/// Every chunk file under pool directory `dir` (temporary files skipped).
fn chunk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                files.push(path);
            }
        }
    }
    files
}

/// The placement policy picks a pool per tenant and per workload, and the workload comes from
/// the client certificate (or, over S3, the access key): tenant 1's `training` writes land in
/// pool `fast`, its other workloads in pool `archive` (the tenant's rule), an S3 PUT with the
/// dev key (workload `dev`) in pool `general`; every workload of the tenant reads every file
/// back, wherever its chunks are.
#[test]
fn a_workloads_writes_go_to_the_pool_its_policy_names() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let config = dir.path().join("server.yaml");
    fs::write(
        &config,
        format!(
            "data_dir: {}\n\
             pools:\n  \
               - {{ name: general, device_class: bulk-nvme, path: general }}\n  \
               - {{ name: fast, device_class: fast-nvme, path: fast }}\n  \
               - {{ name: archive, device_class: bulk-nvme, path: archive }}\n\
             placement:\n  \
               tenants: {{ 1: archive }}\n  \
               workloads: {{ \"1/training\": fast, \"1/dev\": general }}\n",
            data.display()
        ),
    )
    .unwrap();
    let server = Server::start_with(&data, free_port(), &["--config", config.to_str().unwrap()]);
    let ca = server.data_dir.join("cluster-ca");
    let training = issue(&ca, 1, "training", &dir.path().join("training"));
    let etl = issue(&ca, 1, "etl", &dir.path().join("etl"));
    let path_training = dir.path().join("mnt-training");
    let path_etl = dir.path().join("mnt-etl");
    let mount_training = Mounted::start(
        cert_mount(&server, &path_training, Some(&training)),
        &path_training,
    );
    let _mount_etl = Mounted::start(cert_mount(&server, &path_etl, Some(&etl)), &path_etl);

    let pool = |name: &str| chunk_files(&data.join(name)).len();
    let model: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(path_training.join("model.bin"), &model).unwrap();
    assert!(pool("fast") >= 1, "training's chunks are in pool fast");
    assert_eq!(pool("archive"), 0, "nothing of training's in archive");

    let table: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
    fs::write(path_etl.join("table.bin"), &table).unwrap();
    assert!(pool("archive") >= 1, "etl follows the tenant's rule");
    assert_eq!(
        pool("general"),
        0,
        "no rule sends tenant 1 to the default pool"
    );

    assert_eq!(fs::read(path_etl.join("model.bin")).unwrap(), model);
    assert_eq!(fs::read(path_training.join("table.bin")).unwrap(), table);
    drop(mount_training);

    // Over S3 the workload is the access key's: the dev key's `dev` has its own rule.
    fs::create_dir(path_etl.join("uploads")).unwrap();
    common::boto3(
        &server,
        "s3.put_object(Bucket='uploads', Key='blob', Body=bytes(range(256)) * 1024)",
    );
    assert!(
        pool("general") >= 1,
        "the S3 PUT follows the dev workload's rule"
    );
    assert_eq!(
        fs::read(path_etl.join("uploads/blob")).unwrap(),
        (0..=255u8).cycle().take(256 * 1024).collect::<Vec<u8>>()
    );

    // A policy naming a pool that does not exist stops the server at start, naming it.
    let bad = dir.path().join("bad.yaml");
    fs::write(
        &bad,
        format!(
            "data_dir: {}\nplacement:\n  workloads: {{ \"1/training\": nvme-tier }}\n",
            dir.path().join("bad-data").display()
        ),
    )
    .unwrap();
    let output = Command::new(binary("kiseki-server"))
        .args(["--config", bad.to_str().unwrap()])
        .env("KISEKI_LOG", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"nvme-tier\""), "{stderr}");
}
