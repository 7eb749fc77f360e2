//! Transitional: freeze.rs still imports the mount list from here. The
//! mount list lives in [`super::mounts`]; this file goes when freeze.rs
//! is switched over.

pub(crate) use super::mounts::{fs_mount_list, FsMount};
