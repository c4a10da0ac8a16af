"""Quiet-STaR's switches, typed (research notebook 003; jakob-bjorner/quiet-star-replicate's hydra configs).

Every field is one of the notebook's knobs under the same name where it had one, so its commands translate
key for key: ``python run.py -m use_reasoner=True,False seed=7,8,9`` is
``reasonlab experiment sweep quietstar use_reasoner=true,false seed=7,8,9``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasonlab.errors import ConfigError

Letter = Literal["A", "B", "C", "D"]


class QuietStarConfig(BaseModel):
    """One training run: data, model, thoughts, loss, optimisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- data --------------------------------------------------------------------------------------------------
    data: str = Field("tinyshakespeare", description="'tinyshakespeare' (bundled) or a path to any text file")
    window: int = Field(128, ge=8, description="characters per training window (the notebook's 128)")
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5, description="the last share of the text, held out")
    # -- model -------------------------------------------------------------------------------------------------
    model: Literal["gru", "transformer", "hf"] = Field(
        "gru", description="gru: reasoner/interpreter GRUs; transformer: one small GPT thinking at every position "
                           "at once; hf: the same parallel thinking on a pretrained causal LM (hf_model)")
    hf_model: str = Field("smollm2-135m", description="hf: a registered name, HF directory or hub id")
    sot_token: str = Field("<|im_start|>", description="hf: the vocabulary's token that starts a thought")
    eot_token: str = Field("<|im_end|>", description="hf: the vocabulary's token that ends one")
    use_reasoner: bool = Field(True, description="off: the same model without thoughts (the NLL baseline)")
    base_lm_hidden_dim: int = Field(32, ge=1, description="gru: base language model width")
    reasoner_hidden_dim: int = Field(32, ge=1, description="gru: base reasoner and reasoner width")
    interpreter_hidden_dim: int = Field(32, ge=1, description="gru: interpreter width")
    weight_groups: tuple[Letter, Letter, Letter, Letter] = Field(
        ("A", "B", "C", "D"), description="gru: which of [base LM, base reasoner, reasoner, interpreter] share "
                                          "embedding + GRU weights: equal letters share (A,A,A,A all shared, "
                                          "A,B,C,D none); shared parts need equal widths")
    share_lm_head: bool = Field(True, description="gru: the reasoner samples thought tokens through the LM's head")
    model_hidden_dim: int = Field(64, ge=8, description="transformer: width")
    model_n_layer: int = Field(2, ge=1, description="transformer: blocks")
    model_n_head: int = Field(2, ge=1, description="transformer: attention heads")
    # -- thoughts ----------------------------------------------------------------------------------------------
    max_reasoning_len: int = Field(5, ge=0, description="thought tokens sampled per position (0: none, but the "
                                                        "start/end markers still pass)")
    variable_len: bool = Field(False, description="a thought may end early at the end-of-thought token")
    mix: Literal["add", "concat", "gate"] = Field(
        "add", description="how the with-thought and without-thought predictions combine: add (the thought's "
                           "state — gru: the interpreter's, transformer: <eot>'s — projected and added to the "
                           "text's; the notebook's use_residual), concat (both states concatenated, then "
                           "projected), gate (Quiet-STaR's mixing head: an MLP on both states gives w, eased in "
                           "over gate_warmup steps, and the two predictions' logits are mixed by w)")
    gate_warmup: int = Field(200, ge=0, description="gate: steps over which w's ceiling rises from 0 to 1")
    add_last_context_token: bool = Field(False, description="transformer: after the end-of-thought token, read "
                                                            "the position's own token again and predict from it")
    temperature: float = Field(1.0, gt=0.0, description="thought sampling temperature")
    # -- loss --------------------------------------------------------------------------------------------------
    trice_samples: int = Field(2, ge=1, description="thoughts per position; their mean reward is the baseline")
    policy_loss_beta: float = Field(1.0, description="weight of REINFORCE: -(r - mean r) * sum log p(thought)")
    nll_loss_beta: float = Field(1.0, ge=0.0, description="weight of the NLL of the next character given thoughts")
    entropy_coef: float = Field(0.0, ge=0.0, description="bonus on the thought-token distribution's entropy")
    length_penalty: float = Field(0.0, ge=0.0, description="variable_len: reward minus this per thought token")
    punish_unfinished: float = Field(0.0, ge=0.0, description="variable_len: reward minus this if no end token")
    # -- optimisation ------------------------------------------------------------------------------------------
    steps: int = Field(1000, ge=1, description="optimizer steps")
    batch_size: int = Field(16, ge=1, description="windows per step (each thought trice_samples times)")
    lr: float = Field(3e-3, gt=0.0, description="AdamW learning rate (cosine to 10 %, after 5 % warmup)")
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float = Field(1.0, gt=0.0)
    eval_every: int = Field(100, ge=1, description="steps between validation passes")
    eval_windows: int = Field(64, ge=1, description="validation windows per pass (the same ones every time)")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (a killed run resumes)")
    threads: int = Field(1, ge=1, description="torch threads (sweeps run cells side by side)")
    seed: int = Field(7, description="model init, window order and thought sampling")

    @model_validator(mode="after")
    def _shared_widths(self) -> QuietStarConfig:
        widths = [self.base_lm_hidden_dim, self.reasoner_hidden_dim, self.reasoner_hidden_dim,
                  self.interpreter_hidden_dim]
        names = ["base_lm_hidden_dim", "reasoner_hidden_dim", "reasoner_hidden_dim", "interpreter_hidden_dim"]
        for i in range(4):
            for j in range(i):
                if self.weight_groups[i] == self.weight_groups[j] and widths[i] != widths[j]:
                    raise ConfigError(f"weight_groups {''.join(self.weight_groups)}: parts {j} and {i} share "
                                      f"weights but {names[j]}={widths[j]} != {names[i]}={widths[i]}")
        if self.model != "gru" and self.variable_len:
            raise ConfigError("variable_len: the GRU model only (the parallel transformer thinks in lock step)")
        if self.model == "transformer" and self.model_hidden_dim % self.model_n_head:
            raise ConfigError(f"model_hidden_dim {self.model_hidden_dim} is not a multiple of "
                              f"model_n_head {self.model_n_head}")
        return self
