//! The backend is a run-time value: burn 0.22 tensors carry it in their `Device`.

#[cfg(not(target_arch = "wasm32"))]
use burn::tensor::Device;

/// Backends this build can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// burn's pure-Rust CPU backend (SIMD; threads natively).
    Flex,
    /// burn's wgpu backend: Vulkan/Metal/DX12 natively (lavapipe without a GPU), WebGPU in a browser.
    Wgpu,
    /// burn's libtorch backend (PyTorch's CPU kernels), for faster native training; only in
    /// builds with the `tch` feature, which links the libtorch of a Python `torch==2.9.0`.
    #[cfg(feature = "tch")]
    LibTorch,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flex" | "cpu" => Ok(Backend::Flex),
            "wgpu" | "webgpu" | "gpu" => Ok(Backend::Wgpu),
            #[cfg(feature = "tch")]
            "tch" | "libtorch" => Ok(Backend::LibTorch),
            #[cfg(not(feature = "tch"))]
            "tch" | "libtorch" => Err("this build has no libtorch backend\n---> HINT: build with `--features tch` and LIBTORCH_USE_PYTORCH=1 in a Python environment with torch==2.9.0".into()),
            _ => Err(format!("backend {s:?} is not one of flex (CPU), wgpu, tch")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
            #[cfg(feature = "tch")]
            Backend::LibTorch => "tch",
        })
    }
}

/// The device for `backend`, initialised once per process (wgpu may not be initialised twice).
#[cfg(not(target_arch = "wasm32"))]
pub fn device(backend: Backend) -> Result<Device, String> {
    #[cfg(feature = "gpu")]
    use std::sync::OnceLock;
    #[cfg(feature = "gpu")]
    static WGPU: OnceLock<Result<Device, String>> = OnceLock::new();
    match backend {
        #[cfg(feature = "cpu")]
        Backend::Flex => Ok(Device::flex()),
        #[cfg(not(feature = "cpu"))]
        Backend::Flex => Err("this build has no flex backend\n---> HINT: build with the `cpu` feature (on by default)".into()),
        #[cfg(feature = "tch")]
        #[allow(deprecated)] // burn 0.22 marks its tch backend deprecated; it is what runs PyTorch's kernels
        Backend::LibTorch => Ok(Device::libtorch()),
        #[cfg(feature = "gpu")]
        Backend::Wgpu => WGPU
            .get_or_init(|| {
                Device::wgpu_options().init().map_err(|e| {
                    format!("no wgpu adapter could be initialised ({e}); try --backend flex, or install a Vulkan driver (mesa-vulkan-drivers)")
                })
            })
            .clone(),
        #[cfg(not(feature = "gpu"))]
        Backend::Wgpu => Err("this build has no wgpu backend\n---> HINT: build with the `gpu` feature (on by default)".into()),
    }
}

/// The devices of data-parallel training (`train --devices N`): N times the backend's one device,
/// each shard a thread on it (every backend here has one device; see docs/SCALE.md).
#[cfg(not(target_arch = "wasm32"))]
pub fn devices(backend: Backend, n: usize) -> Result<Vec<Device>, String> {
    if !(1..=64).contains(&n) {
        return Err(format!("--devices {n}: expected 1 to 64"));
    }
    Ok(vec![device(backend)?; n])
}
