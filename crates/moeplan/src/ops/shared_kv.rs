//! DeepSeek-V4's attention layer as ops: multi-query attention over one
//! shared key-value head, its compressor and (in CSA layers) the indexer,
//! and the grouped low-rank output. No kernel of it was measured, so each
//! op stands on the calibrated table of the DeepSeek-V3/V3.2 kernel whose
//! shape it shares, named beside it; the layer runs as one MLA module and
//! pays `mla_fixed` once.

use super::{CompressedCore, CostContext, FixedCost, Op, StepShape};
use crate::model::{Attention, Mixer, Selection};
use crate::ops::OpKind;

/// The widths of a `Attention::SharedKv` layer on one GPU (TP splits the
/// heads and the output groups).
struct SharedKvDims {
    /// Query heads on this GPU.
    heads: f64,
    /// Rank of the query latent.
    q_lora: f64,
    /// Width of a head and of the shared key-value head.
    head_dim: f64,
    /// Rank of each output group.
    o_lora: f64,
    /// Output groups on this GPU.
    groups: f64,
    /// Heads per output group.
    heads_per_group: f64,
}

impl CostContext<'_> {
    /// One DeepSeek-V4 attention layer over `t` tokens: its projections,
    /// the core over the window and the compressed entries, the grouped
    /// output, as one MLA module.
    pub(super) fn shared_kv_ops(
        &self,
        count: u32,
        s: &StepShape,
        mixer: Mixer,
        t: f64,
        ops: &mut Vec<Op>,
    ) {
        let Attention::SharedKv {
            n_heads,
            q_lora_rank,
            head_dim,
            o_lora_rank,
            o_groups,
            ..
        } = self.model.attention
        else {
            return;
        };
        let tp = self.layout.tp as f64;
        let d = SharedKvDims {
            heads: n_heads as f64 / tp,
            q_lora: q_lora_rank as f64,
            head_dim: head_dim as f64,
            o_lora: o_lora_rank as f64,
            groups: o_groups as f64 / tp,
            heads_per_group: n_heads as f64 / o_groups.max(1) as f64,
        };
        let mut parts: Vec<Op> = Vec::with_capacity(8);
        self.shared_kv_projections(count, mixer, t, &d, &mut parts);
        self.attention_core(count, s, mixer, d.heads, 1.0, 0.0, &mut parts);
        self.grouped_output(count, t, &d, &mut parts);
        self.mla_module_ops(count, s, parts, ops);
    }

    /// The input projections of every token: wq_a and wkv fused with the
    /// compressor's value and score projections (replicated, the fp8 GEMM
    /// table `gemm_fp8`, as V3's fused q_a/kv_a), wq_b (heads split by
    /// TP), and in CSA layers the indexer's q, weights and key compressor
    /// (replicated, as V3.2's `DsaIndexerProj`). The compressors are bf16
    /// in the checkpoint and costed here at the attention's type.
    fn shared_kv_projections(
        &self,
        count: u32,
        mixer: Mixer,
        t: f64,
        d: &SharedKvDims,
        parts: &mut Vec<Op>,
    ) {
        let m = self.model;
        let h = m.hidden_size as f64;
        let w = m.dtypes.attention;
        let windows = match mixer.compression() {
            Some((_, Selection::Indexed)) => 2.0,
            Some((_, Selection::All)) => 1.0,
            None => 0.0,
        };
        let a_cols = d.q_lora + d.head_dim + 2.0 * windows * d.head_dim;
        let fixed = FixedCost::InModule;
        parts.push(self.gemm(OpKind::MlaQAKvAProj, count, t, a_cols, h, w, fixed));
        let q_cols = d.heads * d.head_dim;
        parts.push(self.gemm(OpKind::MlaQBProj, count, t, q_cols, d.q_lora, w, fixed));
        let indexed = matches!(
            mixer,
            Mixer::Compressed {
                selection: Selection::Indexed,
                ..
            }
        );
        if let Some(ix) = m.indexer.as_ref().filter(|_| indexed) {
            let (ih, id) = (ix.n_heads as f64, ix.head_dim as f64);
            let q = self.gemm(
                OpKind::DsaIndexerProj,
                count,
                t,
                ih * id,
                d.q_lora,
                w,
                fixed,
            );
            let k = self.gemm(OpKind::DsaIndexerProj, count, t, ih + 4.0 * id, h, w, fixed);
            parts.push(Op {
                flop: q.flop + k.flop,
                bytes: q.bytes + k.bytes,
                time: q.time + k.time,
                ..q
            });
        }
    }

    /// The grouped low-rank output: wo_a, each group's heads to its rank
    /// (an fp8 grouped einsum; costed as one GEMM of the groups' columns on
    /// `gemm_fp8`, its FLOP and weight bytes exact, under the absorb
    /// BMMs' op name `MlaAbsorb`), then wo_b to the hidden width (`OProj`,
    /// split by TP, all-reduced after the layer as V3's o_proj).
    fn grouped_output(&self, count: u32, t: f64, d: &SharedKvDims, parts: &mut Vec<Op>) {
        let h = self.model.hidden_size as f64;
        let w = self.model.dtypes.attention;
        let fixed = FixedCost::InModule;
        let rank = d.groups * d.o_lora;
        let group_in = d.heads_per_group * d.head_dim;
        parts.push(self.gemm(OpKind::MlaAbsorb, count, t, rank, group_in, w, fixed));
        parts.push(self.gemm(OpKind::OProj, count, t, h, rank, w, fixed));
    }

    /// The compressed part of a layer's attention core, for `mixer`
    /// (None unless it is `Mixer::Compressed`): CSA reads the indexer's
    /// top-k entries after scoring every key (2 · heads · head_dim FLOP
    /// each, the keys read once); HCA reads every entry.
    pub(super) fn compressed_core(&self, mixer: Mixer) -> Option<CompressedCore> {
        let Mixer::Compressed {
            ratio, selection, ..
        } = mixer
        else {
            return None;
        };
        let m = self.model;
        let entry = m.shared_kv_entry_bytes();
        let core = CompressedCore {
            ratio: ratio.max(1) as f64,
            read_max: f64::INFINITY,
            entry,
            index_key: crate::units::Bytes::ZERO,
            index_flop: 0.0,
        };
        match (selection, &m.indexer) {
            (Selection::Indexed, Some(ix)) => Some(CompressedCore {
                read_max: ix.topk as f64,
                index_key: m.index_entry_bytes(),
                index_flop: 2.0 * (ix.n_heads * ix.head_dim) as f64,
                ..core
            }),
            (Selection::Indexed, None) | (Selection::All, _) => Some(core),
        }
    }
}
