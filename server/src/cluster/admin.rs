//! Cluster administration subcommands of `kiseki-server`: create the cluster CA, issue node
//! and native-client certificates, change a shard group's membership through a running node.
//!
//! Owns command-line handling only; the membership change itself runs on the node (and from
//! there on the shard's leader).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use kiseki_proto::cluster::v1::cluster_client::ClusterClient;
use kiseki_proto::cluster::v1::MembershipRequest;
use tonic::transport::Endpoint;

use super::tls;
use crate::config::ServerConfig;

/// Administration subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// The cluster CA: create it, issue node certificates from it.
    #[command(subcommand)]
    ClusterCa(CaCommand),
    /// Change the membership of a tenant's shard group (through the node of --config).
    #[command(
        after_help = "Example (replace node 1 by node 4 in tenant 1's group):\n  \
        kiseki-server cluster-membership --config node-1.yaml --tenant 1 \
        --add-learner 4 --voters 2,3,4 --remove 1"
    )]
    ClusterMembership(MembershipArgs),
}

/// `cluster-ca` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Create a cluster CA (ca.pem, ca.key) in DIR.
    Init {
        /// Directory for the CA.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Issue the certificate of a node (node-<ID>.pem/.key in OUT, named node-<ID>.kiseki).
    IssueNodeCert {
        /// Directory of the CA.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node's id.
        #[arg(long, value_name = "ID")]
        node_id: u64,
        /// Where to write the certificate and key.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Issue a native client's certificate for a tenant's workload (mutual TLS with
    /// kiseki-client-fuse --cert/--key): URI SAN kiseki://tenant/<ID>/workload/<NAME>,
    /// clientAuth only; written as client-tenant-<ID>-<NAME>.pem/.key in OUT.
    #[command(after_help = "Example:\n  \
        kiseki-server cluster-ca issue-client-cert --ca-dir /etc/kiseki/ca --tenant 1 \
        --workload training --out /etc/kiseki/client")]
    IssueClientCert {
        /// Directory of the CA.
        #[arg(long = "ca-dir", visible_alias = "dir", value_name = "DIR")]
        ca_dir: PathBuf,
        /// The tenant the client acts for.
        #[arg(long, value_name = "ID")]
        tenant: u64,
        /// The workload within the tenant (1 to 64 of A-Z a-z 0-9 . _ -).
        #[arg(long, value_name = "NAME")]
        workload: String,
        /// Days the certificate is valid (at most 397).
        #[arg(long, value_name = "DAYS", default_value_t = tls::CLIENT_CERT_DAYS_DEFAULT)]
        days: u32,
        /// Where to write the certificate and key.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Arguments of `cluster-membership` (with the global `--config` of a node of the cluster,
/// whose identity and address are used).
#[derive(Debug, clap::Args)]
pub struct MembershipArgs {
    /// The tenant whose shard group changes.
    #[arg(long)]
    tenant: u64,
    /// Nodes to add as learners first.
    #[arg(long, value_name = "ID")]
    add_learner: Vec<u64>,
    /// Exactly these nodes vote afterwards (comma-separated).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    voters: Vec<u64>,
    /// Nodes to remove from the group afterwards.
    #[arg(long, value_name = "ID")]
    remove: Vec<u64>,
}

/// Runs an administration subcommand; `config` is the global `--config`.
pub async fn run(command: Command, config: Option<PathBuf>) -> anyhow::Result<()> {
    match command {
        Command::ClusterCa(CaCommand::Init { dir }) => {
            let path = tls::init_ca(&dir)?;
            println!("cluster CA: {}", path.display());
        }
        Command::ClusterCa(CaCommand::IssueNodeCert { dir, node_id, out }) => {
            let (cert, key) = tls::issue_node_cert(&dir.join(tls::CA_KEY_FILE), node_id)?;
            let (cert, key) = tls::write_node_cert(&out, node_id, &cert, &key)?;
            println!("node {node_id}: {} {}", cert.display(), key.display());
        }
        Command::ClusterCa(CaCommand::IssueClientCert {
            ca_dir,
            tenant,
            workload,
            days,
            out,
        }) => {
            let identity =
                tls::ClientIdentity::new(tenant, &workload).map_err(anyhow::Error::msg)?;
            let (cert, key) =
                tls::issue_client_cert(&ca_dir.join(tls::CA_KEY_FILE), &identity, days)?;
            let (cert, key) = tls::write_cert_pair(&out, &identity.file_stem(), &cert, &key)?;
            println!(
                "{} (valid {days} days): {} {}",
                identity.uri(),
                cert.display(),
                key.display()
            );
        }
        Command::ClusterMembership(args) => {
            let config = config.context("cluster-membership needs --config of a node")?;
            membership(&config, args).await?;
        }
    }
    Ok(())
}

async fn membership(config: &std::path::Path, args: MembershipArgs) -> anyhow::Result<()> {
    let config = ServerConfig::load(config)?;
    let cluster = config
        .cluster
        .as_ref()
        .context("the config has no cluster section")?;
    let node_tls = cluster.node_tls(&config.data_dir)?;
    let mut address = cluster.listen;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let channel = Endpoint::from_shared(format!("https://{address}"))?
        .tls_config(node_tls.client_config(cluster.node_id))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to node {} at {address}", cluster.node_id))?;
    let reply = ClusterClient::new(channel)
        .change_membership(MembershipRequest {
            from_node: cluster.node_id,
            tenant: args.tenant,
            shard_index: 0,
            add_learners: args.add_learner,
            voters: args.voters,
            remove: args.remove,
        })
        .await
        .context("membership change")?
        .into_inner();
    println!(
        "tenant {}: voters {:?}, learners {:?}, leader {:?}",
        args.tenant, reply.voters, reply.learners, reply.leader
    );
    Ok(())
}
