//! The OCI runtime-spec description of a sandbox, for crun/runc or any other runtime.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    get_default_maskedpaths, get_default_mounts, get_default_readonly_paths, LinuxBuilder,
    LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::{caps, clean_path, Error, Mount, Network, Result, Sandbox};

fn oci(e: oci_spec::OciSpecError) -> Error {
    Error::Config(format!("building the OCI spec: {e}"))
}

pub(crate) fn build(sb: &Sandbox, rootfs: &Path) -> Result<Spec> {
    let cfg = &sb.config;
    let caps: std::collections::HashSet<caps::Capability> =
        cfg.capabilities.list().into_iter().collect();
    // As Docker: a non-root process gets the set only as its bounding set.
    let non_root = sb.user.uid != 0;
    let set =
        |root_only: bool| if root_only && non_root { Default::default() } else { caps.clone() };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(set(true))
        .permitted(set(true))
        .inheritable(set(true))
        .ambient(std::collections::HashSet::new())
        .build()
        .map_err(oci)?;
    let cwd = format!("/{}", clean_path(&cfg.process.cwd).join("/"));
    let user = UserBuilder::default()
        .uid(sb.user.uid)
        .gid(sb.user.gid)
        .additional_gids(sb.user.additional_gids.clone())
        .build()
        .map_err(oci)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(cfg.process.args.clone())
        .env(sb.env.clone())
        .cwd(PathBuf::from(cwd))
        .user(user)
        .capabilities(capabilities)
        .no_new_privileges(cfg.no_new_privileges)
        .build()
        .map_err(oci)?;

    // No cgroup mount: the sandbox does not manage cgroups (and crun refuses it on hybrid hosts).
    let mut mounts: Vec<_> = get_default_mounts()
        .into_iter()
        .filter(|m| m.destination() != Path::new("/sys/fs/cgroup"))
        .collect();
    // The default /sys is read-write in some oci-spec versions; ours is read-only.
    for m in &mut mounts {
        if m.destination() == Path::new("/sys") {
            m.set_options(Some(vec![
                "nosuid".into(),
                "noexec".into(),
                "nodev".into(),
                "ro".into(),
            ]));
        }
    }
    for m in &cfg.mounts {
        let target = PathBuf::from(format!("/{}", clean_path(m.target()).join("/")));
        let b = MountBuilder::default().destination(target);
        let built = match m {
            Mount::Bind { source, read_only, .. } => {
                let mut o = vec!["rbind".to_string()];
                o.push(if *read_only { "ro" } else { "rw" }.into());
                b.typ("bind").source(source.clone()).options(o)
            }
            Mount::Cache { source, .. } => {
                b.typ("bind").source(source.clone()).options(vec!["rbind".into(), "rw".into()])
            }
            Mount::Secret { source, .. } => b.typ("bind").source(source.clone()).options(vec![
                "rbind".into(),
                "ro".into(),
                "nosuid".into(),
                "nodev".into(),
                "noexec".into(),
            ]),
            Mount::Tmpfs { size, .. } => {
                let mut o = vec!["nosuid".to_string(), "nodev".into()];
                if let Some(s) = size {
                    o.push(format!("size={s}"));
                }
                b.typ("tmpfs").source("tmpfs").options(o)
            }
        };
        mounts.push(built.build().map_err(oci)?);
    }

    let mut types = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
    ];
    if cfg.network == Network::None {
        types.push(LinuxNamespaceType::Network);
    }
    let namespaces = types
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build().map_err(oci))
        .collect::<Result<Vec<_>>>()?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(get_default_maskedpaths())
        .readonly_paths(get_default_readonly_paths())
        .build()
        .map_err(oci)?;
    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(rootfs.to_path_buf())
                .readonly(cfg.read_only_root)
                .build()
                .map_err(oci)?,
        )
        .hostname(cfg.hostname.clone())
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .build()
        .map_err(oci)
}
