//! The order of blocks in a scan (T.81 A.2: interleaved MCUs of `h × v` blocks
//! per component, or one component's blocks in raster order) and restart
//! intervals (T.81 B.2.4.4, E.2.4), with the frame's block geometry.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::cast_possible_truncation
)]

use super::bits::BitReader;
use super::markers::{Frame, JResult};

/// Block geometry of one frame component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentGeometry {
    pub h: usize,
    pub v: usize,
    /// Its size in samples (libjpeg's `downsampled_width` / `_height`:
    /// ⌈X·h/Hmax⌉ × ⌈Y·v/Vmax⌉, T.81 A.1.1).
    pub width: usize,
    pub height: usize,
    /// Blocks coded when the component is scanned alone (T.81 A.2.2).
    pub blocks_wide: usize,
    pub blocks_high: usize,
    /// Blocks in the MCU grid of interleaved scans (`mcus_wide · h`), which the
    /// sample planes are allocated for.
    pub padded_wide: usize,
    pub padded_high: usize,
}

/// Block geometry of a frame (T.81 A.1.1, A.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Geometry {
    pub width: usize,
    pub height: usize,
    pub h_max: usize,
    pub v_max: usize,
    pub mcus_wide: usize,
    pub mcus_high: usize,
    pub components: Vec<ComponentGeometry>,
}

impl Geometry {
    pub fn new(frame: &Frame) -> Self {
        let (width, height) = (usize::from(frame.width), usize::from(frame.height));
        let h_max = frame.components.iter().map(|c| c.h).max().unwrap_or(1).max(1);
        let v_max = frame.components.iter().map(|c| c.v).max().unwrap_or(1).max(1);
        // Frame sizes are below 2^16 and factors at most 4: no overflow.
        let mcus_wide = width.div_ceil(h_max.saturating_mul(8));
        let mcus_high = height.div_ceil(v_max.saturating_mul(8));
        let components = frame
            .components
            .iter()
            .map(|c| {
                let w = width.saturating_mul(c.h).div_ceil(h_max);
                let h = height.saturating_mul(c.v).div_ceil(v_max);
                ComponentGeometry {
                    h: c.h,
                    v: c.v,
                    width: w,
                    height: h,
                    blocks_wide: w.div_ceil(8),
                    blocks_high: h.div_ceil(8),
                    padded_wide: mcus_wide.saturating_mul(c.h),
                    padded_high: mcus_high.saturating_mul(c.v),
                }
            })
            .collect();
        Self { width, height, h_max, v_max, mcus_wide, mcus_high, components }
    }
}

/// What a scan does with each block: `component` is the index into the
/// frame's components, `(bx, by)` the block's position in that component.
pub trait BlockSink {
    fn block(&mut self, bits: &mut BitReader<'_>, component: usize, bx: usize, by: usize);
    /// A restart marker: predictions and end-of-band runs start again.
    fn restart(&mut self);
}

/// Runs `sink` over every block of a scan of `components` (frame indices, in
/// scan order) from `bits`, with restarts every `restart_interval` MCUs (0: none).
pub fn run_scan(
    geometry: &Geometry,
    components: &[usize],
    restart_interval: usize,
    bits: &mut BitReader<'_>,
    sink: &mut impl BlockSink,
) -> JResult<()> {
    let mut mcu = 0usize;
    let mut before_mcu = |bits: &mut BitReader<'_>, sink: &mut dyn FnMut()| -> JResult<()> {
        if mcu > 0 && restart_interval > 0 && mcu.checked_rem(restart_interval) == Some(0) {
            if bits.overran_end() {
                return Err(TRUNCATED.into());
            }
            bits.restart();
            sink();
        }
        mcu = mcu.wrapping_add(1);
        Ok(())
    };
    if let [single] = components {
        // Non-interleaved: the component's own blocks, one per MCU.
        let g = geometry.components.get(*single).ok_or("a JPEG scan names a missing component")?;
        for by in 0..g.blocks_high {
            for bx in 0..g.blocks_wide {
                before_mcu(bits, &mut || sink.restart())?;
                sink.block(bits, *single, bx, by);
            }
        }
    } else {
        let mut layout = Vec::with_capacity(components.len());
        for &c in components {
            let g = geometry.components.get(c).ok_or("a JPEG scan names a missing component")?;
            layout.push((c, g.h, g.v));
        }
        // libjpeg's D_MAX_BLOCKS_IN_MCU (JERR_BAD_MCU_SIZE); T.81 B.2.3 allows 10.
        if layout.iter().map(|&(_, h, v)| h.saturating_mul(v)).sum::<usize>() > 10 {
            return Err("a JPEG scan has more than 10 blocks in an MCU".into());
        }
        for my in 0..geometry.mcus_high {
            for mx in 0..geometry.mcus_wide {
                before_mcu(bits, &mut || sink.restart())?;
                for &(c, h, v) in &layout {
                    for dy in 0..v {
                        for dx in 0..h {
                            // Below the padded sizes (mcus · factor): no overflow.
                            let bx = mx.saturating_mul(h).saturating_add(dx);
                            let by = my.saturating_mul(v).saturating_add(dy);
                            sink.block(bits, c, bx, by);
                        }
                    }
                }
            }
        }
    }
    if bits.overran_end() {
        return Err(TRUNCATED.into());
    }
    Ok(())
}

const TRUNCATED: &str = "the JPEG data ends inside a scan (the file is truncated)";
