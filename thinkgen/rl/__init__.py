"""Policy-gradient math for both halves of the system: GRPO for the thinker (:mod:`.grpo`) and
Flow-GRPO's SDE sampler and loss for the DiT (:mod:`.flow_grpo`). The stages that use them are in
:mod:`thinkgen.train.rl_stage`; rewards are in :mod:`thinkgen.rewards`."""
