#!/usr/bin/env python3
"""A PEFT LoRA training run on the tiny XLM-R QA model, step by step, for tests/tasks/test_train_parity.cpp.

Run with the pinned venv (torch 2.11, transformers 5.17, peft 0.21.2):
    /root/.cache/qlora/venv/bin/python tools/gen_train_parity.py

The loop is what transformers' Trainer does for one epoch, written out: PEFT LoRA (r 4, alpha 8, targets
query/key/value/dense, qa_outputs saved in full, task QUESTION_ANS), model.train() with every dropout
probability 0 (hidden/attention dropout overridden to 0.0, lora_dropout 0.0) so the run is deterministic,
eager attention (qlora's attention), torch.optim.AdamW(foreach=False) over the two groups Trainer builds
(get_decay_parameter_names: decay vs no decay), get_linear_schedule_with_warmup, clip_grad_norm_ over
model.parameters() as Trainer passes them.

The sample order is the one qlora's engine draws for epoch 0 (data::shuffled_indices(N, seed + 0): mt19937_64
+ Fisher-Yates, the pure-Python copy in tests/fixtures/data/make_split_fixtures.py), so that the same
expectations serve a hand-written C++ loop and train::run_training. Step k uses samples order[4k : 4k + 4].

Writes tests/fixtures/train_parity/:
  init_adapter/    save_pretrained of the adapter before training (lora_B set to N(0, 0.05^2): with B = 0
                   the step-0 gradient of every lora_A would be exactly 0)
  final_adapter/   save_pretrained after the 20 steps
  samples.safetensors   input_ids / attention_mask [N, T] int64 (right padding with pad id 1),
                   start_positions / end_positions [N] int64 (some beyond T: clamped and ignored by HF),
                   order [N] int64 (the engine's epoch-0 order)
  expected.safetensors  loss / grad_norm / lr [steps] float64 (loss of the step's batch, total norm before
                   clipping, lr the step used), grad0.<adapter key>: every trainable gradient of step 0
                   (before clipping), keyed as in adapter_model.safetensors without "base_model.model."
  info.json        hyper-parameters, the two groups (adapter keys, in Trainer's order), and the order of
                   the trainable tensors in model.parameters() (what clip_grad_norm_ stacks)
"""

import json
import os
import shutil
import sys

import torch
from peft import LoraConfig, TaskType, get_peft_model
from safetensors.torch import save_file
from transformers import Trainer, XLMRobertaForQuestionAnswering, get_linear_schedule_with_warmup

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures", "data"))
from make_split_fixtures import check_engine, shuffled_indices  # noqa: E402

MODEL_DIR = "tests/fixtures/models/tiny-xlmr-qa"
OUT = "tests/fixtures/train_parity"
PREFIX = "base_model.model."

STEPS = 20
BATCH = 4
SEQ = 24
SEED = 42  # TrainerOptions::seed: epoch 0 draws shuffled_indices(N, SEED)
LR = 2e-3
WEIGHT_DECAY = 0.01
WARMUP = 3
MAX_GRAD_NORM = 1.0
B_INIT_STD = 0.05


def adapter_key(name):
    """PEFT parameter name -> its key in adapter_model.safetensors without PREFIX."""
    assert name.startswith(PREFIX), name
    key = name[len(PREFIX):]
    key = key.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
    return key.replace(".modules_to_save.default.", ".")


def make_samples(vocab, pad_id, g):
    """STEPS * BATCH rows: <s> random tokens </s>, right-padded to SEQ with lengths 6..SEQ."""
    n = STEPS * BATCH
    ids = torch.full((n, SEQ), pad_id, dtype=torch.int64)
    mask = torch.zeros((n, SEQ), dtype=torch.int64)
    starts = torch.zeros(n, dtype=torch.int64)
    ends = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        length = SEQ if i % 5 == 0 else int(torch.randint(6, SEQ + 1, (1,), generator=g))
        body = torch.randint(3, vocab, (length - 2,), generator=g)  # never <s> 0, <pad> 1, </s> 2
        ids[i, :length] = torch.cat([torch.tensor([0]), body, torch.tensor([2])])
        mask[i, :length] = 1
        if i % 7 == 3:  # answer truncated away: HF clamps to SEQ and ignores the row
            starts[i], ends[i] = SEQ + 5, SEQ + 9
        elif i % 11 == 4:  # one side beyond the sequence, the other inside
            starts[i], ends[i] = length - 2, SEQ + 1
        elif i % 6 == 1:  # no answer: the <s> token
            starts[i], ends[i] = 0, 0
        else:
            s = int(torch.randint(1, length - 1, (1,), generator=g))
            e = min(length - 2, s + int(torch.randint(0, 4, (1,), generator=g)))
            starts[i], ends[i] = s, e
    return ids, mask, starts, ends


def save_adapter(model, name):
    out_dir = os.path.join(OUT, name)
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    os.remove(os.path.join(out_dir, "README.md"))  # PEFT's generated model card; not part of the format


def main():
    # target_modules is a Python set, saved in set order: fix the string hash seed so that reruns write
    # the same adapter_config.json.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)
    os.chdir(REPO)
    check_engine()
    torch.manual_seed(0)  # lora_A init (kaiming uniform)
    base = XLMRobertaForQuestionAnswering.from_pretrained(
        MODEL_DIR, attn_implementation="eager", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "key", "value", "dense"],
        lora_dropout=0.0,
        modules_to_save=["qa_outputs"],
        task_type=TaskType.QUESTION_ANS,
    )
    model = get_peft_model(base, config)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * B_INIT_STD)
    os.makedirs(OUT, exist_ok=True)
    save_adapter(model, "init_adapter")

    cfg = base.config
    ids, mask, starts, ends = make_samples(cfg.vocab_size, cfg.pad_token_id, g)
    order = shuffled_indices(ids.shape[0], SEED)

    # Trainer.create_optimizer: decay = get_decay_parameter_names(model), two groups over requires_grad
    # parameters in named_parameters() order (the method does not use self).
    decay_names = set(Trainer.get_decay_parameter_names(None, model))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [(n, p) for n, p in named if n in decay_names]
    plain = [(n, p) for n, p in named if n not in decay_names]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for _, p in decay], "weight_decay": WEIGHT_DECAY},
            {"params": [p for _, p in plain], "weight_decay": 0.0},
        ],
        lr=LR,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=WEIGHT_DECAY,
        foreach=False,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, WARMUP, STEPS)
    keys = {n: adapter_key(n) for n, _ in named}

    model.train()
    losses, norms, lrs, expected = [], [], [], {}
    for step in range(STEPS):
        rows = torch.tensor(order[step * BATCH:(step + 1) * BATCH])
        out = model(
            input_ids=ids[rows],
            attention_mask=mask[rows],
            start_positions=starts[rows],
            end_positions=ends[rows],
        )
        out.loss.backward()
        if step == 0:
            for n, p in named:
                expected["grad0." + keys[n]] = p.grad.detach().clone().contiguous()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        norms.append(norm.item())
        lrs.append(lr)
        print(f"step {step:2d}  loss {losses[-1]:.6f}  grad_norm {norms[-1]:.6f}  lr {lr:.3e}")
    save_adapter(model, "final_adapter")

    expected["loss"] = torch.tensor(losses, dtype=torch.float64)
    expected["grad_norm"] = torch.tensor(norms, dtype=torch.float64)
    expected["lr"] = torch.tensor(lrs, dtype=torch.float64)
    save_file(expected, os.path.join(OUT, "expected.safetensors"))
    save_file(
        {
            "input_ids": ids,
            "attention_mask": mask,
            "start_positions": starts,
            "end_positions": ends,
            "order": torch.tensor(order, dtype=torch.int64),
        },
        os.path.join(OUT, "samples.safetensors"),
    )
    info = {
        "steps": STEPS,
        "micro_batch_size": BATCH,
        "seq_len": SEQ,
        "seed": SEED,
        "learning_rate": LR,
        "weight_decay": WEIGHT_DECAY,
        "warmup_steps": WARMUP,
        "max_grad_norm": MAX_GRAD_NORM,
        "adam_betas": [0.9, 0.999],
        "adam_epsilon": 1e-8,
        "decay": [keys[n] for n, _ in decay],
        "no_decay": [keys[n] for n, _ in plain],
        "parameter_order": [keys[n] for n, _ in named],
    }
    with open(os.path.join(OUT, "info.json"), "w") as f:
        f.write(json.dumps(info, indent=2) + "\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"{OUT}: {size} bytes; loss {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
