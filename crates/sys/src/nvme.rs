//! NVMe: the SMART / Health Information log page through the admin
//! command ioctl (`NVME_IOCTL_ADMIN_CMD`, `<linux/nvme_ioctl.h>`), as
//! qemu-ga's `get_nvme_smart()` asks for it.

use std::os::fd::{AsRawFd, BorrowedFd};

use super::{cvt, Errno};

/// `struct nvme_admin_cmd` (= `nvme_passthru_cmd`, 72 bytes).
#[repr(C)]
#[derive(Default)]
struct AdminCmd {
    opcode: u8,
    flags: u8,
    rsvd1: u16,
    nsid: u32,
    cdw2: u32,
    cdw3: u32,
    metadata: u64,
    addr: u64,
    metadata_len: u32,
    data_len: u32,
    cdw10: u32,
    cdw11: u32,
    cdw12: u32,
    cdw13: u32,
    cdw14: u32,
    cdw15: u32,
    timeout_ms: u32,
    result: u32,
}

const _: () = assert!(std::mem::size_of::<AdminCmd>() == 72);

/// NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd).
const NVME_IOCTL_ADMIN_CMD: u32 = 0xC048_4E41;
/// Get Log Page.
const ADM_CMD_GET_LOG_PAGE: u8 = 0x02;
/// SMART / Health Information.
const LOG_SMART_INFO: u32 = 0x02;
const NSID_BROADCAST: u32 = 0xFFFF_FFFF;

/// Size of the SMART / Health Information log page.
pub const SMART_LOG_LEN: usize = 512;

/// The SMART / Health Information log page (all namespaces, the Retain
/// Asynchronous Event bit set), raw little-endian bytes.
pub fn smart_log(fd: BorrowedFd<'_>) -> Result<[u8; SMART_LOG_LEN], Errno> {
    let mut log = [0u8; SMART_LOG_LEN];
    let mut cmd = AdminCmd {
        opcode: ADM_CMD_GET_LOG_PAGE,
        nsid: NSID_BROADCAST,
        addr: log.as_mut_ptr() as u64,
        data_len: SMART_LOG_LEN as u32,
        // Log id, RAE, number of dwords - 1.
        cdw10: LOG_SMART_INFO | (1 << 15) | ((((SMART_LOG_LEN >> 2) - 1) as u32) << 16),
        ..Default::default()
    };
    // SAFETY: the command is a live, correctly sized nvme_admin_cmd whose
    // addr/data_len describe `log`, which outlives the call.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), NVME_IOCTL_ADMIN_CMD as libc::Ioctl, &mut cmd as *mut AdminCmd) })?;
    Ok(log)
}
