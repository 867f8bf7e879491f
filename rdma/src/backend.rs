//! Choosing the verbs backend (`rdma_backend`, `rdma_device`, `rdma_port`, `rdma_gid_index`).

use crate::fabric::FabricDevice;
use crate::verbs::{Device, VerbsError};
use std::sync::Arc;

/// Opens the device the flags ask for:
/// - `rdma_backend=fabric`: a software fabric device;
/// - `rdma_backend=ibverbs`: the hardware device of `rdma_device` / `rdma_port` /
///   `rdma_gid_index` (an error if this build lacks the `ibverbs` feature or no device fits);
/// - `rdma_backend=auto` (default): the hardware device if the feature is built and one opens,
///   else the software fabric.
pub fn open_device() -> Result<Arc<dyn Device>, VerbsError> {
    match crate::flags::RDMA_BACKEND.get() {
        "fabric" => Ok(FabricDevice::open()?),
        "ibverbs" => open_hardware(),
        _ => open_hardware().or_else(|_| Ok(FabricDevice::open()? as Arc<dyn Device>)),
    }
}

#[cfg(feature = "ibverbs")]
fn open_hardware() -> Result<Arc<dyn Device>, VerbsError> {
    Ok(Arc::new(crate::ibverbs_backend::IbvDevice::from_flags()?))
}

#[cfg(not(feature = "ibverbs"))]
fn open_hardware() -> Result<Arc<dyn Device>, VerbsError> {
    Err(VerbsError::NoDevice(
        "--rdma_backend=ibverbs needs spindle-rdma built with the `ibverbs` feature".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::BackendKind;

    #[test]
    fn auto_falls_back_to_the_fabric_without_hardware() {
        // No NIC on the machines this is tested on: `auto` must still give a device.
        let dev = open_device().unwrap();
        if std::env::var_os("SPINDLE_RDMA_TEST_DEVICE").is_none() {
            assert_eq!(dev.kind(), BackendKind::Fabric);
        }
        #[cfg(not(feature = "ibverbs"))]
        assert!(open_hardware()
            .unwrap_err()
            .to_string()
            .contains("`ibverbs` feature"));
    }
}
