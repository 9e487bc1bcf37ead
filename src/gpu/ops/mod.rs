//! The GPU kernels. Each op's file owns its WGSL, its parameter layout and its
//! dispatch size; this module compiles them once per device and records a
//! forward pass as a list of dispatches ([`Recorder`] → [`Program`]) that is
//! built once per input shape and replayed in one compute pass.

pub(crate) mod attention;
pub(crate) mod gather_rows;
pub(crate) mod layer_norm;
pub(crate) mod masked_mean;
pub(crate) mod matmul;
pub(crate) mod patches;
pub(crate) mod tokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    Matmul,
    MatmulQ8,
    MatmulQ4,
    /// Only on devices with `shader-f16`.
    MatmulF16,
    LayerNorm,
    Attention,
    Patches,
    Tokens,
    GatherRows,
    MaskedMean,
}

impl Kernel {
    const ALL: [Kernel; 10] = [
        Kernel::Matmul,
        Kernel::MatmulQ8,
        Kernel::MatmulQ4,
        Kernel::MatmulF16,
        Kernel::LayerNorm,
        Kernel::Attention,
        Kernel::Patches,
        Kernel::Tokens,
        Kernel::GatherRows,
        Kernel::MaskedMean,
    ];

    fn source(self) -> String {
        match self {
            Kernel::Matmul => matmul::shader_f32(),
            Kernel::MatmulQ8 => matmul::shader_q8(),
            Kernel::MatmulQ4 => matmul::shader_q4(),
            Kernel::MatmulF16 => matmul::shader_f16(),
            Kernel::LayerNorm => layer_norm::SHADER.into(),
            Kernel::Attention => attention::SHADER.into(),
            Kernel::Patches => patches::SHADER.into(),
            Kernel::Tokens => tokens::SHADER.into(),
            Kernel::GatherRows => gather_rows::SHADER.into(),
            Kernel::MaskedMean => masked_mean::SHADER.into(),
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|&k| k == self).expect("every kernel is in ALL")
    }
}

/// One compute pipeline per kernel, compiled when the device opens (the f16
/// kernel only where the device has `shader-f16`).
pub(crate) struct Kernels {
    pipelines: Vec<Option<wgpu::ComputePipeline>>,
}

impl Kernels {
    pub(crate) fn compile(device: &wgpu::Device) -> Self {
        let f16 = device.features().contains(wgpu::Features::SHADER_F16);
        let pipelines = Kernel::ALL
            .iter()
            .map(|kernel| {
                if *kernel == Kernel::MatmulF16 && !f16 {
                    return None;
                }
                let label = format!("{kernel:?}");
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(&label),
                    source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
                });
                Some(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&label),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }))
            })
            .collect();
        Self { pipelines }
    }

    pub(crate) fn has(&self, kernel: Kernel) -> bool {
        self.pipelines[kernel.index()].is_some()
    }

    fn get(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        self.pipelines[kernel.index()].as_ref().expect("a kernel is only recorded where it was compiled")
    }
}

/// Every kernel takes eight 32-bit parameters (f32 ones as bits), the first
/// binding of its group, so that one uniform buffer holds a whole pass.
pub(crate) type Params = [u32; 8];

/// Workgroups for `n` independent groups of work, folded into x and y when
/// `n` exceeds the per-dimension limit; kernels rebuild the linear index from
/// `num_workgroups` and skip indices past their element count.
pub(crate) fn grid(n: u32) -> [u32; 3] {
    const MAX: u32 = 65535;
    if n <= MAX {
        [n.max(1), 1, 1]
    } else {
        [MAX, n.div_ceil(MAX), 1]
    }
}

struct PendingStep {
    kernel: Kernel,
    params_offset: u64,
    buffers: Vec<wgpu::Buffer>,
    workgroups: [u32; 3],
}

/// Collects the dispatches of one forward pass. It needs only the device
/// and the compiled kernels (not the context, which owns both: the ops stay
/// below the context in the module graph).
pub(crate) struct Recorder<'a> {
    device: &'a wgpu::Device,
    kernels: &'a Kernels,
    stride: u64,
    params: Vec<u8>,
    steps: Vec<PendingStep>,
}

impl<'a> Recorder<'a> {
    /// `uniform_alignment`: the device's `min_uniform_buffer_offset_alignment`.
    pub(crate) fn new(device: &'a wgpu::Device, kernels: &'a Kernels, uniform_alignment: u32) -> Self {
        let stride = u64::from(uniform_alignment).max(std::mem::size_of::<Params>() as u64);
        Self { device, kernels, stride, params: Vec::new(), steps: Vec::new() }
    }

    pub(crate) fn dispatch(&mut self, kernel: Kernel, params: Params, buffers: &[&wgpu::Buffer], workgroups: [u32; 3]) {
        let params_offset = self.params.len() as u64;
        self.params.extend(params.iter().flat_map(|p| p.to_le_bytes()));
        self.params.resize((params_offset + self.stride) as usize, 0);
        let buffers = buffers.iter().map(|&b| b.clone()).collect();
        self.steps.push(PendingStep { kernel, params_offset, buffers, workgroups });
    }

    pub(crate) fn finish(self) -> Program {
        use wgpu::util::DeviceExt;
        let device = self.device;
        let uniforms = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &self.params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let steps = self
            .steps
            .into_iter()
            .map(|step| {
                let pipeline = self.kernels.get(step.kernel);
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniforms,
                        offset: step.params_offset,
                        size: std::num::NonZeroU64::new(std::mem::size_of::<Params>() as u64),
                    }),
                }];
                for (i, buffer) in step.buffers.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: buffer.as_entire_binding() });
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&format!("{:?}", step.kernel)),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                (step.kernel, bind_group, step.workgroups)
            })
            .collect();
        Program { steps, _uniforms: uniforms }
    }
}

/// A recorded forward pass, replayed for every input of the same shape.
pub(crate) struct Program {
    steps: Vec<(Kernel, wgpu::BindGroup, [u32; 3])>,
    _uniforms: wgpu::Buffer,
}

impl Program {
    pub(crate) fn encode(&self, kernels: &Kernels, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("forward"), timestamp_writes: None });
        for (kernel, bind_group, [x, y, z]) in &self.steps {
            pass.set_pipeline(kernels.get(*kernel));
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*x, *y, *z);
        }
    }
}
