//! Recorded forward passes, one per input shape, with the buffers they run on.
//! Building one costs a few hundred bind groups; replaying it costs one
//! compute pass, so shapes seen before (a batch size, a text length) are kept.

use std::cell::RefCell;
use std::rc::Rc;

use super::context::GpuContext;
use super::ops::Program;
use crate::error::Result;

pub(crate) struct Plan {
    pub(crate) program: Program,
    /// Written before each run (pixels, or token embeddings).
    pub(crate) input: wgpu::Buffer,
    /// The row of each sequence that is pooled, where it depends on the input
    /// (text; written before each run).
    pub(crate) pooled_rows: Option<wgpu::Buffer>,
    /// One flag per token, which tokens are attended to and averaged, under a
    /// key-padding mask or mean pooling (text; written before each run).
    pub(crate) attended: Option<wgpu::Buffer>,
    pub(crate) output: wgpu::Buffer,
    /// Every buffer the plan made, returned to the pool when it is evicted.
    pub(crate) buffers: Vec<wgpu::Buffer>,
}

/// The most recent plans, by (batch, sequence length).
/// A plan and the (batch, sequence length) it was recorded for.
type KeyedPlan = ((usize, usize), Rc<Plan>);

pub(crate) struct PlanCache {
    plans: RefCell<Vec<KeyedPlan>>,
}

const KEPT: usize = 4;

impl PlanCache {
    pub(crate) fn new() -> Self {
        Self { plans: RefCell::new(Vec::new()) }
    }

    pub(crate) fn get(
        &self,
        ctx: &GpuContext,
        key: (usize, usize),
        build: impl FnOnce() -> Result<Plan>,
    ) -> Result<Rc<Plan>> {
        let mut plans = self.plans.borrow_mut();
        if let Some(i) = plans.iter().position(|(k, _)| *k == key) {
            let entry = plans.remove(i);
            let plan = entry.1.clone();
            plans.push(entry);
            return Ok(plan);
        }
        drop(plans);
        let plan = Rc::new(build()?);
        let mut plans = self.plans.borrow_mut();
        plans.push((key, plan.clone()));
        if plans.len() > KEPT {
            let (_, evicted) = plans.remove(0);
            // A plan still in use by a pending forward pass keeps its buffers.
            if let Ok(evicted) = Rc::try_unwrap(evicted) {
                ctx.recycle(evicted.buffers);
            }
        }
        Ok(plan)
    }
}
