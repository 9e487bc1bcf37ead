//! The text tower on the GPU, uploaded from [`TextTower`] with its settings.
//! Token and position embeddings are looked up on the CPU (a table of 49408
//! rows need not occupy GPU memory). Texts of a batch are padded to the
//! longest, which the mask makes harmless: under CLIP's causal mask no
//! position attends to a later one, and under a key-padding mask (SigLIP's
//! lengths, the pad ids of open_clip's BERT towers: `TextTower::attended`) no
//! query attends to a padded key; so padding never reaches the pooled
//! position, nor the mean of a mean-pooled tower.

use super::context::GpuContext;
use super::encoder::{to_vec, Activations, GpuEncoder, GpuNorm};
use super::head::GpuHead;
use super::ops::attention::KeyMask;
use super::ops::{gather_rows, masked_mean};
use super::plan::{Plan, PlanCache};
use crate::models::tower::{TextPool, TextTower};
use crate::nn::transformer::MaskKind;
use crate::error::{Error, Result};

pub(crate) struct GpuText {
    /// The CPU tower, for its embedding tables and pooling rule.
    tower: TextTower,
    embedding_norm: Option<GpuNorm>,
    encoder: GpuEncoder,
    final_norm: Option<GpuNorm>,
    head: GpuHead,
    plans: PlanCache,
}

impl GpuText {
    pub(crate) fn upload(ctx: &GpuContext, tower: &TextTower) -> Result<Self> {
        GpuEncoder::check_sequence(tower.max_positions())?;
        let hidden = tower.position_embedding.dim(1)?;
        Ok(Self {
            tower: tower.clone(),
            embedding_norm: tower.embedding_layer_norm.as_ref().map(|n| GpuNorm::upload(ctx, n, "embedding_layer_norm")).transpose()?,
            encoder: GpuEncoder::upload(ctx, &tower.encoder)?,
            final_norm: tower.final_layer_norm.as_ref().map(|n| GpuNorm::upload(ctx, n, "final_layer_norm")).transpose()?,
            head: GpuHead::upload(ctx, tower.head_hidden.as_ref(), Some(&tower.projection), hidden)?,
            plans: PlanCache::new(),
        })
    }

    pub(crate) fn embedding_dim(&self) -> usize {
        self.head.out_dim()
    }

    pub(crate) fn max_batch(&self, ctx: &GpuContext, seq: usize) -> Result<usize> {
        ctx.max_batch(seq * self.encoder.widest_per_token() * 4, "text")
    }

    /// Projected, unnormalised features ([texts, dim]) of each tokenised text
    /// whose first `lengths[i]` ids are real tokens (read only under a
    /// key-padding mask or mean pooling, as `TextTower::forward_ids` reads them).
    pub(crate) async fn features(&self, ctx: &GpuContext, texts: &[Vec<u32>], lengths: &[usize]) -> Result<Vec<f32>> {
        let batch = texts.len();
        let seq = texts.iter().map(Vec::len).max().unwrap_or(0);
        if batch == 0 || seq == 0 || texts.iter().any(Vec::is_empty) {
            return Err(Error::Input("every text needs at least one token".into()));
        }
        if seq > self.tower.max_positions() {
            return Err(Error::Input(format!("{seq} tokens exceed the model's {} positions", self.tower.max_positions())));
        }
        if lengths.len() != batch {
            return Err(Error::Input(format!("{} lengths for {batch} texts", lengths.len())));
        }
        if let Some((ids, length)) = texts.iter().zip(lengths).find(|(ids, &length)| length > ids.len()) {
            return Err(Error::Input(format!("{length} real tokens among {} ids", ids.len())));
        }
        // Pad ids that no position reads are not run (`TextTower::needed_positions`).
        let texts: Vec<&[u32]> = texts.iter().map(|ids| &ids[..self.tower.needed_positions(ids)]).collect();
        let seq = texts.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mask = self.tower.encoder.mask_kind();
        if mask == MaskKind::None && texts.iter().any(|t| t.len() != seq) {
            // Without a mask, padding would reach the pooled position.
            return Err(Error::Input("unmasked text towers take texts of one length".into()));
        }
        let hidden = self.encoder.hidden;
        let mut embeddings = vec![0.0f32; batch * seq * hidden];
        let mut pooled = Vec::with_capacity(batch);
        // The batch's padding (past each text's ids) is never attended.
        let mut attended = vec![0u32; batch * seq];
        for (b, (ids, &length)) in texts.iter().zip(lengths).enumerate() {
            let rows = to_vec(&self.tower.input_embeddings(ids)?)?;
            let start = b * seq * hidden;
            embeddings[start..start + rows.len()].copy_from_slice(&rows);
            pooled.push((b * seq + self.tower.pooling_position(ids)) as u32);
            for (flag, keep) in attended[b * seq..].iter_mut().zip(self.tower.attended(ids, length)) {
                *flag = u32::from(keep);
            }
        }
        let plan = self.plans.get(ctx, (batch, seq), || self.plan(ctx, batch, seq, mask))?;
        ctx.write(&plan.input, &embeddings);
        if let Some(rows) = &plan.pooled_rows {
            ctx.write_u32(rows, &pooled);
        }
        if let Some(buffer) = &plan.attended {
            ctx.write_u32(buffer, &attended);
        }
        ctx.run_and_read(|e| plan.program.encode(&ctx.kernels, e), &plan.output, batch * self.embedding_dim()).await
    }

    fn plan(&self, ctx: &GpuContext, batch: usize, seq: usize, mask: MaskKind) -> Result<Plan> {
        let hidden = self.encoder.hidden;
        let rows = batch * seq;
        let acts = Activations::new(ctx, &self.encoder, rows);
        let mean = self.tower.pool == TextPool::Mean;
        let pooled_rows = (!mean).then(|| ctx.activation(batch));
        let attended = (mask == MaskKind::KeyPadding || mean).then(|| ctx.activation(rows));
        let pooled = ctx.activation(batch * hidden);
        let pooled_normed = ctx.activation(batch * hidden);
        let key_mask = match (mask, &attended) {
            (MaskKind::Causal, _) => KeyMask::Causal,
            (MaskKind::KeyPadding, Some(flags)) => KeyMask::Keys(flags),
            _ => KeyMask::All,
        };

        let mut rec = ctx.recorder();
        // The embeddings are written to x1 when a layer norm takes them to x0.
        let input = match &self.embedding_norm {
            Some(norm) => {
                norm.record(&mut rec, &acts.x1, &acts.x0, rows, hidden);
                acts.x1.clone()
            }
            None => acts.x0.clone(),
        };
        self.encoder.record(&mut rec, &acts, batch, seq, key_mask);
        let output = match (&pooled_rows, &attended) {
            (Some(pooled_rows), _) => {
                // The final layer norm acts per row, so only the pooled rows need it.
                gather_rows::record(&mut rec, &acts.x0, pooled_rows, &pooled, batch, hidden);
                match &self.final_norm {
                    Some(norm) => {
                        norm.record(&mut rec, &pooled, &pooled_normed, batch, hidden);
                        &pooled_normed
                    }
                    None => &pooled,
                }
            }
            (None, Some(flags)) => {
                // A mean is taken after the final layer norm, over every row.
                let normed = match &self.final_norm {
                    Some(norm) => {
                        norm.record(&mut rec, &acts.x0, &acts.normed, rows, hidden);
                        &acts.normed
                    }
                    None => &acts.x0,
                };
                masked_mean::record(&mut rec, normed, flags, &pooled, batch, seq, hidden);
                &pooled
            }
            (None, None) => return Err(Error::Gpu("a mean-pooled text plan without its token flags".into())),
        };
        let mut buffers = vec![pooled.clone(), pooled_normed.clone()];
        let output = self.head.record(ctx, &mut rec, output, batch, &mut buffers);
        buffers.extend(acts.into_buffers());
        buffers.extend(pooled_rows.clone());
        buffers.extend(attended.clone());
        Ok(Plan { program: rec.finish(), input, pooled_rows, attended, output, buffers })
    }
}
