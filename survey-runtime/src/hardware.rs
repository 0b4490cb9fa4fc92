//! Hardware facts: probed once per node, off the hot path, with timeouts.
//!
//! Probes, in order: the Tegra device tree (Jetson), `nvidia-smi`, `rocm-smi`,
//! macOS `sysctl`, then a CPU fallback. Each command runs with a deadline and
//! is killed when it passes. Parsers are pure functions over the command
//! output, tested on captured output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::model::DeviceFacts;
use crate::privacy::{self, SafeValue};

/// Time one probe command may take.
pub const PROBE_COMMAND_TIMEOUT: Duration = Duration::from_secs(3);

/// One GPU as the probe saw it (raw text; sanitized when exported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Marketing name.
    pub name: String,
    /// High-entropy id (UUID), if the driver reports one.
    pub uuid: Option<String>,
}

/// What the node runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardwareFacts {
    /// Device family: `cuda`, `rocm`, `metal` or `cpu`.
    pub backend_device: String,
    /// GPUs found, in driver order.
    pub gpus: Vec<GpuInfo>,
    /// A system-on-chip (Apple silicon, Jetson) with memory shared by CPU and GPU.
    pub is_soc: bool,
}

impl HardwareFacts {
    /// A node with no GPU.
    pub fn cpu_only() -> HardwareFacts {
        HardwareFacts {
            backend_device: "cpu".to_string(),
            gpus: Vec::new(),
            is_soc: false,
        }
    }

    /// Probes this machine. Blocks for at most a few command timeouts; survey
    /// calls it on its own worker thread.
    pub fn probe() -> HardwareFacts {
        if let Some(facts) = probe_tegra() {
            return facts;
        }
        if let Some(out) = run_with_timeout(
            "nvidia-smi",
            &["--query-gpu=name,uuid", "--format=csv,noheader"],
            PROBE_COMMAND_TIMEOUT,
        ) && let Some(facts) = parse_nvidia_smi(&out)
        {
            return facts;
        }
        if let Some(out) = run_with_timeout(
            "rocm-smi",
            &["--showproductname", "--showuniqueid", "--csv"],
            PROBE_COMMAND_TIMEOUT,
        ) && let Some(facts) = parse_rocm_smi(&out)
        {
            return facts;
        }
        if cfg!(target_os = "macos")
            && let Some(out) = run_with_timeout(
                "sysctl",
                &["-n", "machdep.cpu.brand_string"],
                PROBE_COMMAND_TIMEOUT,
            )
            && let Some(facts) = parse_macos_brand(&out)
        {
            return facts;
        }
        HardwareFacts::cpu_only()
    }
}

fn probe_tegra() -> Option<HardwareFacts> {
    let compatible = std::fs::read("/proc/device-tree/compatible").ok();
    let model = std::fs::read("/proc/device-tree/model").ok();
    parse_tegra(compatible.as_deref(), model.as_deref())
}

/// Parses `nvidia-smi --query-gpu=name,uuid --format=csv,noheader`.
pub fn parse_nvidia_smi(output: &str) -> Option<HardwareFacts> {
    let gpus: Vec<GpuInfo> = output
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let name = fields.next().filter(|n| !n.is_empty())?;
            if name.starts_with("NVIDIA-SMI has failed") || name.contains("No devices") {
                return None;
            }
            let uuid = fields.next().filter(|u| !u.is_empty()).map(str::to_string);
            Some(GpuInfo {
                name: name.to_string(),
                uuid,
            })
        })
        .collect();
    (!gpus.is_empty()).then(|| HardwareFacts {
        backend_device: "cuda".to_string(),
        gpus,
        is_soc: false,
    })
}

/// Parses `rocm-smi --showproductname --showuniqueid --csv`.
pub fn parse_rocm_smi(output: &str) -> Option<HardwareFacts> {
    let mut lines = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('='));
    let header: Vec<String> = lines
        .find(|l| l.to_ascii_lowercase().starts_with("device"))?
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let column = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
    let name_col = column(&["card series", "card model", "marketing name"])?;
    let uuid_col = column(&["unique id", "uuid"]);
    let gpus: Vec<GpuInfo> = lines
        .filter(|l| l.to_ascii_lowercase().starts_with("card"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            let name = fields.get(name_col).filter(|n| !n.is_empty())?;
            Some(GpuInfo {
                name: (*name).to_string(),
                uuid: uuid_col
                    .and_then(|c| fields.get(c))
                    .filter(|u| !u.is_empty() && **u != "N/A")
                    .map(|u| (*u).to_string()),
            })
        })
        .collect();
    (!gpus.is_empty()).then(|| HardwareFacts {
        backend_device: "rocm".to_string(),
        gpus,
        is_soc: false,
    })
}

/// Parses macOS `sysctl -n machdep.cpu.brand_string`: Apple silicon is a SoC
/// with a Metal GPU; anything else is left to the CPU fallback.
pub fn parse_macos_brand(output: &str) -> Option<HardwareFacts> {
    let brand = output.trim();
    brand.starts_with("Apple M").then(|| HardwareFacts {
        backend_device: "metal".to_string(),
        gpus: vec![GpuInfo {
            name: brand.to_string(),
            uuid: None,
        }],
        is_soc: true,
    })
}

/// Parses the Tegra device tree: `compatible` (NUL-separated) and `model`.
pub fn parse_tegra(compatible: Option<&[u8]>, model: Option<&[u8]>) -> Option<HardwareFacts> {
    let compatible = String::from_utf8_lossy(compatible.unwrap_or_default());
    let model = String::from_utf8_lossy(model.unwrap_or_default());
    let model = model.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let tegra = compatible
        .split('\0')
        .any(|c| c.starts_with("nvidia,tegra"))
        || model.contains("Jetson");
    tegra.then(|| HardwareFacts {
        backend_device: "cuda".to_string(),
        gpus: vec![GpuInfo {
            name: if model.is_empty() {
                "NVIDIA Tegra".to_string()
            } else {
                model.to_string()
            },
            uuid: None,
        }],
        is_soc: true,
    })
}

/// Runs `program args`, returning its stdout if it exits successfully within
/// `timeout`; kills it otherwise.
pub(crate) fn run_with_timeout(program: &str, args: &[&str], timeout: Duration) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::Builder::new()
        .name("survey-probe-read".into())
        .spawn(move || {
            let mut out = Vec::new();
            // Cap what a misbehaving tool can make us hold.
            let _ = (&mut stdout).take(1 << 20).read_to_end(&mut out);
            out
        })
        .ok()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let out = reader.join().ok()?;
    status
        .filter(|s| s.success())
        .and_then(|_| String::from_utf8(out).ok())
}

/// The hardware attributes of one model: node facts with the host's
/// per-launch [`DeviceFacts`] on top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceView {
    pub backend_device: Option<SafeValue>,
    pub gpu_name: Option<SafeValue>,
    pub gpu_stable_id: Option<SafeValue>,
    pub gpu_count: i64,
    pub is_soc: bool,
}

impl DeviceView {
    /// The node as a whole: the GPU name only when every GPU has the same
    /// one, and no stable id (a node may have several GPUs).
    pub(crate) fn node(node: &HardwareFacts) -> DeviceView {
        let first = node.gpus.first().map(|g| g.name.as_str());
        let same_name = node.gpus.iter().all(|g| Some(g.name.as_str()) == first);
        DeviceView {
            backend_device: privacy::backend_device(&node.backend_device),
            gpu_name: first.filter(|_| same_name).and_then(privacy::gpu_name),
            gpu_stable_id: None,
            gpu_count: i64::try_from(node.gpus.len()).unwrap_or(i64::MAX),
            is_soc: node.is_soc,
        }
    }

    pub(crate) fn resolve(node: &HardwareFacts, device: &DeviceFacts) -> DeviceView {
        let backend_device = device
            .backend_device
            .as_deref()
            .unwrap_or(&node.backend_device);
        let on_cpu = backend_device.eq_ignore_ascii_case("cpu");
        let gpu = if on_cpu {
            None
        } else {
            node.gpus.get(device.gpu_index.unwrap_or(0))
        };
        let gpu_name = device
            .gpu_name
            .as_deref()
            .or(gpu.map(|g| g.name.as_str()))
            .filter(|_| !on_cpu);
        let gpu_uuid = device
            .gpu_uuid
            .as_deref()
            .or(gpu.and_then(|g| g.uuid.as_deref()))
            .filter(|_| !on_cpu);
        DeviceView {
            backend_device: privacy::backend_device(backend_device),
            gpu_name: gpu_name.and_then(privacy::gpu_name),
            gpu_stable_id: gpu_uuid.and_then(privacy::gpu_stable_id),
            gpu_count: i64::try_from(node.gpus.len()).unwrap_or(i64::MAX),
            is_soc: node.is_soc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NVIDIA_SMI_TWO_GPUS: &str = "\
NVIDIA GeForce RTX 4090, GPU-6f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b
NVIDIA RTX A6000, GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9
";

    const ROCM_SMI_CSV: &str = "\
device,Unique ID,Card Series,Card Model,Card Vendor,Card SKU,Subsystem ID,Device Rev,Node ID,GUID,GFX Version
card0,0x18f68e602b8a790f,AMD Instinct MI300X,0x74a1,Advanced Micro Devices Inc. [AMD/ATI],M3000100,0x74a1,0x00,2,28851,gfx942
card1,0x2a1c5e8fd1c94b7e,AMD Instinct MI300X,0x74a1,Advanced Micro Devices Inc. [AMD/ATI],M3000100,0x74a1,0x00,3,9711,gfx942
";

    #[test]
    fn nvidia_smi_output_is_parsed() {
        let facts = parse_nvidia_smi(NVIDIA_SMI_TWO_GPUS).unwrap();
        assert_eq!(facts.backend_device, "cuda");
        assert_eq!(facts.gpus.len(), 2);
        assert_eq!(facts.gpus[0].name, "NVIDIA GeForce RTX 4090");
        assert_eq!(
            facts.gpus[1].uuid.as_deref(),
            Some("GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")
        );
        assert!(!facts.is_soc);
        assert_eq!(parse_nvidia_smi(""), None);
        assert_eq!(
            parse_nvidia_smi(
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
            ),
            None
        );
    }

    #[test]
    fn rocm_smi_csv_is_parsed() {
        let facts = parse_rocm_smi(ROCM_SMI_CSV).unwrap();
        assert_eq!(facts.backend_device, "rocm");
        assert_eq!(facts.gpus.len(), 2);
        assert_eq!(facts.gpus[0].name, "AMD Instinct MI300X");
        assert_eq!(facts.gpus[0].uuid.as_deref(), Some("0x18f68e602b8a790f"));
        assert_eq!(parse_rocm_smi("WARNING: No AMD GPUs specified\n"), None);
    }

    #[test]
    fn macos_and_tegra_are_socs() {
        let m = parse_macos_brand("Apple M2 Max\n").unwrap();
        assert_eq!((m.backend_device.as_str(), m.is_soc), ("metal", true));
        assert_eq!(m.gpus[0].name, "Apple M2 Max");
        assert_eq!(
            parse_macos_brand("Intel(R) Core(TM) i9-9980HK CPU @ 2.40GHz"),
            None
        );

        let t = parse_tegra(
            Some(b"nvidia,p3737-0000+p3701-0005\0nvidia,p3701-0005\0nvidia,tegra234\0"),
            Some(b"NVIDIA Jetson AGX Orin Developer Kit\0"),
        )
        .unwrap();
        assert_eq!((t.backend_device.as_str(), t.is_soc), ("cuda", true));
        assert_eq!(t.gpus[0].name, "NVIDIA Jetson AGX Orin Developer Kit");
        assert_eq!(
            parse_tegra(Some(b"raspberrypi,5-model-b\0brcm,bcm2712\0"), None),
            None
        );
    }

    #[test]
    fn device_view_applies_per_launch_overrides() {
        let node = parse_nvidia_smi(NVIDIA_SMI_TWO_GPUS).unwrap();
        let default = DeviceView::resolve(&node, &DeviceFacts::default());
        assert_eq!(
            default.gpu_name.unwrap().as_str(),
            "NVIDIA GeForce RTX 4090"
        );
        assert_eq!(default.gpu_count, 2);
        assert_eq!(default.gpu_stable_id.unwrap().as_str().len(), 16);

        let second = DeviceView::resolve(
            &node,
            &DeviceFacts {
                gpu_index: Some(1),
                ..DeviceFacts::default()
            },
        );
        assert_eq!(second.gpu_name.unwrap().as_str(), "NVIDIA RTX A6000");

        let whole = DeviceView::node(&node);
        assert_eq!(whole.gpu_name, None, "two different GPUs: no single name");
        assert_eq!((whole.gpu_stable_id, whole.gpu_count), (None, 2));
        let mac = DeviceView::node(&parse_macos_brand("Apple M3").unwrap());
        assert_eq!(mac.gpu_name.unwrap().as_str(), "Apple M3");

        let cpu = DeviceView::resolve(
            &node,
            &DeviceFacts {
                backend_device: Some("cpu".into()),
                ..DeviceFacts::default()
            },
        );
        assert_eq!(cpu.backend_device.unwrap().as_str(), "cpu");
        assert_eq!((cpu.gpu_name, cpu.gpu_stable_id), (None, None));
    }

    #[test]
    fn commands_are_killed_at_their_deadline() {
        let start = Instant::now();
        assert_eq!(
            run_with_timeout("sleep", &["30"], Duration::from_millis(200)),
            None
        );
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(
            run_with_timeout("echo", &["hi"], Duration::from_secs(5)).as_deref(),
            Some("hi\n")
        );
        assert_eq!(
            run_with_timeout("survey-no-such-program", &[], Duration::from_secs(1)),
            None
        );
    }
}
