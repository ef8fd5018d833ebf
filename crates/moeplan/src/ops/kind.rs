//! What each operator of a step is: its identity, its role in the model, the
//! collective it runs and whether it reads the KV cache. The cost model
//! (`ops`), the serving layer and the operator graph (`dag`) all match on
//! these enums exhaustively, so a new operator is placed everywhere or the
//! build fails.

use serde::Serialize;

/// One operator of the cost model. The JSON name is the snake_case form
/// (`qkv_proj`, `moe_experts`, `tp_all_reduce_attn`, ...).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// RMS norms and residual adds of a layer.
    NormsResidual,
    /// Fused Q/K/V projection (GQA/MHA).
    QkvProj,
    /// Attention output projection.
    OProj,
    /// MLA: the fused down-projections of Q and of the compressed KV.
    MlaQAKvAProj,
    /// MLA without a Q LoRA: the compressed-KV down-projection.
    MlaKvAProj,
    /// MLA: the Q up-projection.
    MlaQBProj,
    /// MLA: the KV up-projection (non-absorbed prefill form).
    MlaKvBProj,
    /// MLA: the absorbed per-head BMMs of the decode form.
    MlaAbsorb,
    /// Sparse attention (DSA): the lightning indexer's projections.
    DsaIndexerProj,
    /// Linear attention (or Mamba-2): the input projections.
    LinearAttnInProj,
    /// Linear attention (or Mamba-2): the output projection.
    LinearAttnOutProj,
    /// Attention of decode tokens over their KV cache.
    AttentionDecode,
    /// Attention of prefill tokens over the prompt (and cached prefix).
    AttentionPrefill,
    /// Linear attention (or Mamba-2): the recurrent state update, or the
    /// chunked scan of a prompt.
    LinearAttnState,
    /// MLA: the module's fixed cost (small kernels, launch).
    MlaFixed,
    /// MoE gate.
    Router,
    /// Routed expert GEMMs of one EP rank.
    MoeExperts,
    /// LatentMoE: the projections hidden → latent and latent → hidden
    /// around the routed experts.
    MoeLatentProj,
    /// Shared expert gate and up projections.
    SharedExpertGateUp,
    /// Shared expert down projection.
    SharedExpertDown,
    /// Dense MLP gate and up projections.
    MlpGateUp,
    /// Dense MLP down projection.
    MlpDown,
    /// TP all-reduce after attention.
    TpAllReduceAttn,
    /// TP all-reduce after a dense MLP.
    TpAllReduceMlp,
    /// TP all-reduce after the MoE block.
    TpAllReduceMoe,
    /// TP all-reduce of a vocabulary-split embedding.
    TpAllReduceEmbedding,
    /// TP all-gather of the MoE output (EP inside the TP group).
    TpAllGatherMoe,
    /// All-gather of the vocabulary-split logits.
    LogitsAllGather,
    /// All-to-all sending tokens to their experts.
    EpDispatch,
    /// All-to-all bringing expert outputs back.
    EpCombine,
    /// Attention-DP all-gather of tokens before tensor-split experts.
    DpAllGather,
    /// Attention-DP reduce-scatter of tensor-split expert outputs.
    DpReduceScatter,
    /// Token embedding lookup.
    Embedding,
    /// LM head GEMM.
    LmHead,
    /// Softmax and sampling over the vocabulary.
    Sampling,
}

/// What part of the model an operator (or a graph node) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Token embedding lookup (first stage).
    Embedding,
    /// Norms and residual adds.
    Norm,
    /// Q/K/V/O (or MLA, linear-attention) projections.
    AttentionProjection,
    /// Attention over the KV cache (or the linear-attention state).
    AttentionCore,
    /// MoE gate.
    Router,
    /// All-to-all sending tokens to their experts.
    EpDispatch,
    /// Routed expert GEMMs of one EP rank.
    Experts,
    /// LatentMoE's projections into and out of the experts' latent (every
    /// GPU holds them whole).
    LatentProjection,
    /// All-to-all bringing expert outputs back.
    EpCombine,
    /// Shared expert GEMMs.
    SharedExpert,
    /// Dense MLP GEMMs.
    DenseMlp,
    /// A collective over the TP group.
    TpCollective,
    /// Attention-DP all-gather of tokens before the experts (expert TP).
    DpGather,
    /// Attention-DP reduce-scatter of expert outputs (expert TP).
    DpScatter,
    /// Activations to the next pipeline stage.
    PpTransfer,
    /// LM head GEMM (last stage).
    LmHead,
    /// Sampling (last stage).
    Sampling,
    /// A whole layer (`Granularity::Layer` of the graph).
    Layer,
}

/// The collective a communication operator runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Collective {
    /// Sum over the group, result everywhere.
    AllReduce,
    /// Concatenate over the group, result everywhere.
    AllGather,
    /// Sum over the group, each rank keeping its part.
    ReduceScatter,
    /// Every rank sends a different part to every other.
    AllToAll,
    /// Point to point.
    SendRecv,
}

/// Kinds of communication group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// GPUs of a stage with the same (dp, cp) ranks.
    Tp,
    /// GPUs of a stage with the same expert-DP rank (ep × etp GPUs).
    Ep,
    /// A GPU and its peer on the next stage.
    Pp,
}

/// Where an operator's data moves: on the GPU, or over a group's links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Work on the GPU's own units and memory.
    Compute,
    /// A collective over a group of GPUs.
    Communication(Collective, GroupKind),
}

impl OpKind {
    /// The snake_case name used in JSON and tables.
    pub fn name(self) -> &'static str {
        use OpKind::*;
        match self {
            NormsResidual => "norms_residual",
            QkvProj => "qkv_proj",
            OProj => "o_proj",
            MlaQAKvAProj => "mla_q_a_kv_a_proj",
            MlaKvAProj => "mla_kv_a_proj",
            MlaQBProj => "mla_q_b_proj",
            MlaKvBProj => "mla_kv_b_proj",
            MlaAbsorb => "mla_absorb",
            DsaIndexerProj => "dsa_indexer_proj",
            LinearAttnInProj => "linear_attn_in_proj",
            LinearAttnOutProj => "linear_attn_out_proj",
            AttentionDecode => "attention_decode",
            AttentionPrefill => "attention_prefill",
            LinearAttnState => "linear_attn_state",
            MlaFixed => "mla_fixed",
            Router => "router",
            MoeExperts => "moe_experts",
            MoeLatentProj => "moe_latent_proj",
            SharedExpertGateUp => "shared_expert_gate_up",
            SharedExpertDown => "shared_expert_down",
            MlpGateUp => "mlp_gate_up",
            MlpDown => "mlp_down",
            TpAllReduceAttn => "tp_all_reduce_attn",
            TpAllReduceMlp => "tp_all_reduce_mlp",
            TpAllReduceMoe => "tp_all_reduce_moe",
            TpAllReduceEmbedding => "tp_all_reduce_embedding",
            TpAllGatherMoe => "tp_all_gather_moe",
            LogitsAllGather => "logits_all_gather",
            EpDispatch => "ep_dispatch",
            EpCombine => "ep_combine",
            DpAllGather => "dp_all_gather",
            DpReduceScatter => "dp_reduce_scatter",
            Embedding => "embedding",
            LmHead => "lm_head",
            Sampling => "sampling",
        }
    }

    /// The part of the model the operator belongs to.
    pub fn role(self) -> Role {
        use OpKind::*;
        match self {
            NormsResidual => Role::Norm,
            QkvProj | OProj | MlaQAKvAProj | MlaKvAProj | MlaQBProj | MlaKvBProj | MlaAbsorb
            | DsaIndexerProj | LinearAttnInProj | LinearAttnOutProj => Role::AttentionProjection,
            AttentionDecode | AttentionPrefill | LinearAttnState | MlaFixed => Role::AttentionCore,
            Router => Role::Router,
            MoeExperts => Role::Experts,
            MoeLatentProj => Role::LatentProjection,
            SharedExpertGateUp | SharedExpertDown => Role::SharedExpert,
            MlpGateUp | MlpDown => Role::DenseMlp,
            TpAllReduceAttn | TpAllReduceMlp | TpAllReduceMoe | TpAllReduceEmbedding
            | TpAllGatherMoe | LogitsAllGather => Role::TpCollective,
            EpDispatch => Role::EpDispatch,
            EpCombine => Role::EpCombine,
            DpAllGather => Role::DpGather,
            DpReduceScatter => Role::DpScatter,
            Embedding => Role::Embedding,
            LmHead => Role::LmHead,
            Sampling => Role::Sampling,
        }
    }

    /// On the GPU, or the collective it runs and over which group.
    pub fn placement(self) -> Placement {
        use OpKind::*;
        use Placement::Communication as Comm;
        match self {
            TpAllReduceAttn | TpAllReduceMlp | TpAllReduceMoe | TpAllReduceEmbedding => {
                Comm(Collective::AllReduce, GroupKind::Tp)
            }
            TpAllGatherMoe | LogitsAllGather => Comm(Collective::AllGather, GroupKind::Tp),
            EpDispatch | EpCombine => Comm(Collective::AllToAll, GroupKind::Ep),
            DpAllGather => Comm(Collective::AllGather, GroupKind::Ep),
            DpReduceScatter => Comm(Collective::ReduceScatter, GroupKind::Ep),
            NormsResidual | QkvProj | OProj | MlaQAKvAProj | MlaKvAProj | MlaQBProj
            | MlaKvBProj | MlaAbsorb | DsaIndexerProj | LinearAttnInProj | LinearAttnOutProj
            | AttentionDecode | AttentionPrefill | LinearAttnState | MlaFixed | Router
            | MoeExperts | MoeLatentProj | SharedExpertGateUp | SharedExpertDown | MlpGateUp
            | MlpDown | Embedding | LmHead | Sampling => Placement::Compute,
        }
    }

    /// The collective it runs, if it is communication.
    pub fn collective(self) -> Option<Collective> {
        match self.placement() {
            Placement::Compute => None,
            Placement::Communication(c, _) => Some(c),
        }
    }

    /// Whether the operator reads the KV cache (its bytes grow with context).
    pub(crate) fn reads_kv_cache(self) -> bool {
        matches!(self, OpKind::AttentionDecode | OpKind::AttentionPrefill)
    }

    /// Where the MoE block's token exchange sits relative to the expert
    /// GEMMs in data order: before them (dispatch, gather), after them
    /// (combine, scatter), or not part of the exchange.
    pub(crate) fn exchange_side(self) -> ExchangeSide {
        use OpKind::*;
        match self {
            EpDispatch | DpAllGather => ExchangeSide::Before,
            EpCombine | DpReduceScatter => ExchangeSide::After,
            _ => ExchangeSide::None,
        }
    }
}

/// A token-exchange operator's side of the expert GEMMs (see
/// [`OpKind::exchange_side`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExchangeSide {
    /// Runs before the experts.
    Before,
    /// Runs after the experts.
    After,
    /// Not a token exchange.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON name is the serde form, so the table, the explain view and
    /// `--json` agree.
    #[test]
    fn name_is_the_serde_name() {
        for k in [
            OpKind::NormsResidual,
            OpKind::MlaQAKvAProj,
            OpKind::TpAllReduceEmbedding,
            OpKind::DpReduceScatter,
            OpKind::Sampling,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
        }
    }
}
