"""The parameters of the four consensus proofs, fixed for a network at genesis.

They live with the consensus that checks them; the genesis document
(:mod:`bootstrap.genesis`) carries them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ProofParameters(BaseModel):
    """Network-wide parameters of the four consensus proofs, fixed at genesis."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Work: leading zero bits required of the hashcash digest.
    work_difficulty_bits: int = Field(20, ge=8, le=64)
    #: Time: sequential squarings of the verifiable delay function.
    time_vdf_iterations: int = Field(100_000, ge=1_000, le=10**10)
    #: Space: plot size parameter (2**k entries; chiapos builds nothing below 19).
    space_plot_k: int = Field(25, ge=19, le=50)
    #: Stake: a decision needs strictly more than numerator/denominator of the stake.
    stake_quorum_numerator: int = Field(2, ge=1)
    stake_quorum_denominator: int = Field(3, ge=2)

    @model_validator(mode="after")
    def _quorum(self) -> ProofParameters:
        num, den = self.stake_quorum_numerator, self.stake_quorum_denominator
        # Byzantine fault tolerance with n >= 3f+1 needs a quorum of at least 2/3.
        if not (3 * num >= 2 * den and num < den):
            raise ValueError("the stake quorum must be at least 2/3 and below 1")
        return self
