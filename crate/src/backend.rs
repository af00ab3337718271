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
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flex" | "cpu" => Ok(Backend::Flex),
            "wgpu" | "webgpu" | "gpu" => Ok(Backend::Wgpu),
            _ => Err(format!("backend {s:?} is not one of flex (CPU), wgpu")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
        })
    }
}

/// The device for `backend`, initialised once per process (wgpu may not be initialised twice).
#[cfg(not(target_arch = "wasm32"))]
pub fn device(backend: Backend) -> Result<Device, String> {
    use std::sync::OnceLock;
    static WGPU: OnceLock<Result<Device, String>> = OnceLock::new();
    match backend {
        Backend::Flex => Ok(Device::flex()),
        Backend::Wgpu => WGPU
            .get_or_init(|| {
                Device::wgpu_options().init().map_err(|e| {
                    format!("no wgpu adapter could be initialised ({e}); try --backend flex, or install a Vulkan driver (mesa-vulkan-drivers)")
                })
            })
            .clone(),
    }
}
