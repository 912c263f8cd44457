//! A one-node Slurm (munged, slurmctld, slurmd) with its own munge key and socket, ports, state
//! and spool directories, configured in a temporary directory.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, output, poll, stdout_of, tail, Daemon};

fn user_ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name) && fields.len() > 3)
        .and_then(|fields| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
        .unwrap_or_else(|| panic!("user {name} is missing: install the munge package"))
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// What the Slurm cluster is configured with.
pub struct SlurmSetup<'a> {
    /// The built SPANK plugin.
    pub plugin: &'a Path,
    /// Arguments of the plugin's plugstack.conf line.
    pub plugin_args: &'a str,
    /// The kiseki-prolog / kiseki-epilog binaries and their config.
    pub prolog: &'a Path,
    pub epilog: &'a Path,
    pub prolog_config: &'a Path,
}

/// A one-node Slurm cluster (munged, slurmctld, slurmd) configured in `dir`.
pub struct Slurm {
    pub dir: PathBuf,
    pub conf: PathBuf,
    pub node: String,
    // Dropped in this order: slurmd, slurmctld, munged.
    slurmd: Option<Daemon>,
    slurmctld: Option<Daemon>,
    munged: Option<Daemon>,
}

impl Slurm {
    pub fn start(dir: &Path, setup: &SlurmSetup) -> Slurm {
        std::fs::create_dir_all(dir).expect("slurm dir");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let node = stdout_of(Command::new("hostname").arg("-s"), Duration::from_secs(5))
            .trim()
            .to_owned();
        let mut slurm = Slurm {
            dir: dir.to_owned(),
            conf: dir.join("slurm.conf"),
            node,
            slurmd: None,
            slurmctld: None,
            munged: None,
        };
        slurm.start_munged();
        slurm.write_config(setup);
        let log = dir.join("log");
        slurm.slurmctld = Some(Daemon::spawn(
            "slurmctld",
            slurm.command("slurmctld").arg("-D"),
            &log.join("slurmctld.out"),
        ));
        slurm.slurmd = Some(Daemon::spawn(
            "slurmd",
            slurm.command("slurmd").arg("-D"),
            &log.join("slurmd.out"),
        ));
        let idle = poll(Duration::from_secs(60), || {
            (slurm.node_state().as_deref() == Some("idle")).then_some(())
        });
        if idle.is_none() {
            slurm.fail("the node did not become idle within 60 s");
        }
        slurm
    }

    /// Our own munged (own key, socket and pid file), run as the munge user.
    fn start_munged(&mut self) {
        let (uid, gid) = user_ids("munge");
        let key_dir = self.dir.join("munge");
        let run_dir = self.dir.join("munge-run");
        for (path, mode) in [(&key_dir, 0o700), (&run_dir, 0o755)] {
            std::fs::create_dir_all(path).expect("munge dir");
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown munge dir");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        }
        let key = key_dir.join("munge.key");
        stdout_of(
            Command::new("mungekey")
                .args(["--create", "--keyfile"])
                .arg(&key)
                .uid(uid)
                .gid(gid),
            Duration::from_secs(10),
        );
        let socket = self.munge_socket();
        let mut command = Command::new("munged");
        command
            .arg("--foreground")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!(
                "--pid-file={}",
                run_dir.join("munged.pid").display()
            ))
            .arg(format!(
                "--log-file={}",
                key_dir.join("munged.log").display()
            ))
            .arg(format!(
                "--seed-file={}",
                key_dir.join("munged.seed").display()
            ))
            .uid(uid)
            .gid(gid);
        std::fs::create_dir_all(self.dir.join("log")).expect("log dir");
        self.munged = Some(Daemon::spawn(
            "munged",
            &mut command,
            &self.dir.join("log/munged.out"),
        ));
        let up = poll(Duration::from_secs(20), || {
            let encoded = Command::new("munge")
                .arg("--socket")
                .arg(&socket)
                .arg("--no-input")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()?;
            encoded.success().then_some(())
        });
        if up.is_none() {
            self.fail("munged did not answer within 20 s");
        }
    }

    fn munge_socket(&self) -> PathBuf {
        self.dir.join("munge-run/munge.sock")
    }

    fn write_config(&self, setup: &SlurmSetup) {
        let dir = &self.dir;
        for sub in ["state", "spool", "log"] {
            std::fs::create_dir_all(dir.join(sub)).expect("slurm dirs");
        }
        let d = dir.display();
        let node = &self.node;
        let (controller_port, slurmd_port) = (free_port(), free_port());
        // Loopback addresses: the test must not depend on the host name resolving.
        let mut conf = String::new();
        let _ = write!(
            conf,
            "ClusterName=kisekitest\nSlurmctldHost={node}(127.0.0.1)\nSlurmctldPort={controller_port}\n\
             SlurmdPort={slurmd_port}\nSlurmUser=root\nAuthType=auth/munge\nCredType=cred/munge\n\
             AuthInfo=socket={munge}\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             SelectType=select/cons_tres\nMailProg=/bin/true\nReturnToService=2\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             SlurmdDebug=debug\nPlugStackConfig={d}/plugstack.conf\n\
             Prolog={d}/prolog.sh\nEpilog={d}/epilog.sh\nPrologFlags=Alloc\n\
             NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN\n\
             PartitionName=debug Nodes={node} Default=YES MaxTime=10 State=UP\n",
            munge = self.munge_socket().display(),
        );
        std::fs::write(&self.conf, conf).expect("slurm.conf");
        std::fs::write(
            dir.join("plugstack.conf"),
            format!(
                "required {} {}\n",
                setup.plugin.display(),
                setup.plugin_args
            ),
        )
        .expect("plugstack.conf");
        // Slurm runs Prolog=/Epilog= without arguments: wrappers pass the config (sites use the
        // default /etc/kiseki/slurm.yaml) and keep what the programs print before they log.
        for (name, program) in [("prolog", setup.prolog), ("epilog", setup.epilog)] {
            write_executable(
                &dir.join(format!("{name}.sh")),
                &format!(
                    "#!/bin/sh\nexec {} --config {} 2>>{d}/log/{name}.log\n",
                    program.display(),
                    setup.prolog_config.display()
                ),
            );
        }
    }

    /// A Slurm command using this cluster's config.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// `sinfo -h -o %t` for the node (idle, alloc, drain, ...).
    pub fn node_state(&self) -> Option<String> {
        let result = output(
            self.command("sinfo").args(["-h", "-o", "%t"]),
            Duration::from_secs(20),
        );
        let text = String::from_utf8_lossy(&result.stdout).trim().to_owned();
        (result.status.success() && !text.is_empty()).then_some(text)
    }

    /// `scontrol show job -o ID` as key=value pairs (None once the job is forgotten).
    pub fn job(&self, job_id: &str) -> Option<Vec<(String, String)>> {
        let result = output(
            self.command("scontrol").args(["show", "job", "-o", job_id]),
            Duration::from_secs(20),
        );
        if !result.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&result.stdout).into_owned();
        Some(kiseki_slurm::scontrol::parse_fields(&text))
    }

    /// One field of `scontrol show job`.
    pub fn job_field(&self, job_id: &str, field: &str) -> Option<String> {
        self.job(job_id)?
            .into_iter()
            .find(|(key, _)| key == field)
            .map(|(_, value)| value)
    }

    /// Waits until the job reaches one of `states`; the state reached.
    pub fn wait_job(&self, job_id: &str, states: &[&str], limit: Duration) -> String {
        let state = poll(limit, || {
            let state = self.job_field(job_id, "JobState")?;
            states.contains(&state.as_str()).then_some(state)
        });
        state.unwrap_or_else(|| {
            self.fail(&format!(
                "job {job_id} did not reach {states:?} within {limit:?}: {:?}",
                self.job(job_id)
            ))
        })
    }

    /// Panics with `message` and the daemons' logs.
    pub fn fail(&self, message: &str) -> ! {
        let mut logs = String::new();
        for name in [
            "munged.out",
            "slurmctld.out",
            "slurmctld.log",
            "slurmd.out",
            "slurmd.log",
            "prolog.log",
            "epilog.log",
            "kiseki-slurm.log",
        ] {
            let _ = write!(
                logs,
                "\n--- {name}\n{}",
                tail(&self.dir.join("log").join(name), 40)
            );
        }
        panic!("{message}{logs}");
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // Cancel whatever is left so no slurmstepd outlives the test, then stop the daemons.
        if self.slurmctld.as_mut().is_some_and(Daemon::running) {
            let _ = Command::new("scancel")
                .env("SLURM_CONF", &self.conf)
                .args(["--partition", "debug"])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(500));
        }
        drop(self.slurmd.take());
        drop(self.slurmctld.take());
        drop(self.munged.take());
    }
}
