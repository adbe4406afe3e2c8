"""Both training stages, called through their `main([...])` on a tiny model and tiny generated data."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from huggingface_hub import ModelCard
from peft import PeftModel
from safetensors.torch import load_file
from transformers import pipeline

from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
from onediff_idc.model_card import push_checkpoint
from onediff_idc.processing.build import PHOTO_TYPES, BuildSpec, build
from onediff_idc.processing.phrasing import parse_caption
from onediff_idc.processing.schema import load_diffcap
from onediff_idc.train import compare_reports, pretrain_coupled, pretrain_delta, sft
from onediff_idc.train.common import COMPLETE_MARKER, NEW_PARTS, OneDiffCollator
from tiny import random_image, save_tiny_model

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    save_tiny_model(root / "tiny-model")
    spec = BuildSpec(seed=1, scene_pairs=12, photo_pairs=13, caption_samples=16, eval_fraction=0.5, resolution=48)
    build(spec, root / "data", progress=False)
    return root


def recipe_args(recipe: str, workspace: Path, out: Path, *extra: str) -> list[str]:
    """The tiny CPU recipe of a stage, pointed at the test's model, data and output folder."""
    overrides = {
        "config": CONFIGS / "tiny_cpu" / f"{recipe}.yaml",
        "model_name_or_path": workspace / "tiny-model",
        "dataset_path": workspace / "data",
        "output_dir": out,
        "per_device_train_batch_size": 2,
        "logging_steps": 1,
    }
    if recipe == "sft":
        overrides["max_eval_samples"] = 4
    return [item for key, value in overrides.items() for item in (f"--{key}", str(value))] + list(extra)


def stage1_args(workspace: Path, out: Path, *extra: str) -> list[str]:
    return recipe_args("pretrain_coupled", workspace, out, *extra)


def sft_args(workspace: Path, out: Path, *extra: str) -> list[str]:
    return recipe_args("sft", workspace, out, *extra)


def losses(log: Path) -> list[float]:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [record["loss"] for record in records if "loss" in record]  # evaluation lines have none


def tensorboard_scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of one scalar from every TensorBoard event file under `folder`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for events in folder.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            points += [(event.step, event.value) for event in accumulator.Scalars(tag)]
    return sorted(points)


def logged(log: Path, key: str) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in log.read_text().splitlines()]
    return [(record["step"], record[key]) for record in records if key in record]


def test_stage1_trains_the_new_parts_and_leaves_the_towers_bit_identical(workspace, tmp_path):
    argv = stage1_args(workspace, tmp_path / "run", "--max_steps", "4", "--save_steps", "2")
    argv += ["--report_to", "tensorboard"]
    final = pretrain_coupled.main(argv)
    before = load_file(workspace / "tiny-model" / "model.safetensors")
    after = load_file(final / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        frozen = name.startswith(("model.vision_tower.", "model.language_model.", "lm_head."))
        assert torch.equal(before[name], after[name]) == frozen, name
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all(r["samples_per_second"] > 0 for r in records)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["checkpoint_0", "checkpoint_1"]
    card = ModelCard.load(final / "README.md")  # every final/ gets a card with the recipe that made it
    assert card.data.base_model == ["tiny-model"] and "train/pretrain_coupled.py" in card.text
    assert "learning_rate:" in card.text and "Not evaluated yet" in card.text
    # the same losses reach TensorBoard (report_to) as log.jsonl
    board = tensorboard_scalars(tmp_path / "run" / "runs" / "pretrain_coupled", "loss")
    assert [s for s, _ in board] == [1, 2, 3, 4]
    expected = [v for _, v in logged(tmp_path / "run" / "log.jsonl", "loss")]
    np.testing.assert_allclose([v for _, v in board], expected, rtol=1e-6)  # TensorBoard keeps float32
    pipe = pipeline("image-difference-captioning", model=str(final), trust_remote_code=True)
    assert isinstance(
        pipe({"before": random_image(0), "after": random_image(1)}, max_new_tokens=3)["generated_text"], str
    )


def test_stage1_loss_falls_when_overfitting_one_pseudo_pair(workspace, tmp_path):
    argv = stage1_args(workspace, tmp_path / "run", "--max_train_samples", "2", "--max_steps", "40")
    pretrain_coupled.main([*argv, "--learning_rate", "1e-2", "--save_steps", "0", "--warmup_steps", "0"])
    history = losses(tmp_path / "run" / "log.jsonl")
    # towers frozen, only the delta module and projectors learn: a clear fall (no gradient would keep it flat
    # within ~0.05, the same pseudo pair being seen in one order or the other)
    assert sum(history[-5:]) / 5 < history[0] - 0.4, history


def test_stage1_resume_continues_exactly(workspace, tmp_path):
    common = ("--max_steps", "6", "--save_steps", "3", "--gradient_accumulation_steps", "2")
    straight = pretrain_coupled.main(stage1_args(workspace, tmp_path / "straight", *common))
    stopped = pretrain_coupled.main(stage1_args(workspace, tmp_path / "split", *common, "--stop_after_steps", "3"))
    assert stopped.name == "checkpoint_0" and not (tmp_path / "split" / "final").exists()
    resumed = pretrain_coupled.main(stage1_args(workspace, tmp_path / "split", *common, "--resume", "latest"))
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert losses(tmp_path / "straight" / "log.jsonl") == losses(tmp_path / "split" / "log.jsonl")


def test_stage1_two_process_cpu_data_parallel(workspace, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    argv = stage1_args(workspace, tmp_path / "ddp", "--max_steps", "3", "--save_steps", "3")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    proc = subprocess.run(
        [*command, str(REPO / "train" / "pretrain_coupled.py"), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "run_info.json").read_text())
    assert info == {"distributed_type": "DistributedType.MULTI_CPU", "num_processes": 2, "steps": 3}
    checkpoint = tmp_path / "ddp" / "checkpoints" / "checkpoint_0"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in checkpoint.iterdir()}
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()


def test_sft_full_finetuning_with_eval_loss_and_resume(workspace, tmp_path):
    out = tmp_path / "sft"
    common = ("--use_peft", "false", "--eval_steps", "2", "--save_steps", "2")
    final = sft.main(sft_args(workspace, out, *common, "--max_steps", "2", "--report_to", "tensorboard"))
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert any("eval_loss" in entry for entry in state["log_history"])
    board = tensorboard_scalars(out / "runs", "train/loss")
    assert [s for s, _ in board] == [1, 2]
    np.testing.assert_allclose([v for _, v in board], [v for _, v in logged(out / "log.jsonl", "loss")], rtol=1e-6)
    assert {"pipeline_onediff.py", "modeling_onediff.py"} <= {p.name for p in final.iterdir()}
    # the vision tower stays frozen unless asked; the language model trains
    base = load_file(workspace / "tiny-model" / "model.safetensors")
    tuned = load_file(final / "model.safetensors")
    assert torch.equal(
        base["model.vision_tower.embeddings.patch_embedding.weight"],
        tuned["model.vision_tower.embeddings.patch_embedding.weight"],
    )
    assert not torch.equal(
        base["model.language_model.layers.0.mlp.up_proj.weight"],
        tuned["model.language_model.layers.0.mlp.up_proj.weight"],
    )

    sft.main(sft_args(workspace, out, *common, "--max_steps", "4", "--resume_from_checkpoint", "latest"))
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert steps == [1, 2, 3, 4] and state["global_step"] == 4
    assert [step for step, _ in logged(out / "log.jsonl", "loss")] == [1, 2, 3, 4]  # log.jsonl as the custom loops
    assert [step for step, _ in logged(out / "log.jsonl", "eval_loss")] == [2, 4]


def test_sft_with_a_frozen_language_model_trains_only_the_new_parts(workspace, tmp_path):
    final = sft.main(
        sft_args(
            workspace,
            tmp_path / "align",
            "--use_peft",
            "false",
            "--freeze_language_model",
            "true",
            "--max_steps",
            "2",
            "--eval_strategy",
            "no",
            "--save_steps",
            "2",
        )
    )
    base = load_file(workspace / "tiny-model" / "model.safetensors")
    tuned = load_file(final / "model.safetensors")
    assert base.keys() == tuned.keys()
    for name in base:
        new_part = name.startswith(tuple(f"model.{part}." for part in NEW_PARTS))
        assert torch.equal(base[name], tuned[name]) != new_part, name
    with pytest.raises(ValueError, match="contradict"):
        sft.main(sft_args(workspace, tmp_path / "bad", "--use_peft", "true", "--freeze_language_model", "true"))


def test_sft_lora_adapter_reloads_onto_the_base_and_generates(workspace, tmp_path):
    out = tmp_path / "lora"
    final = sft.main(sft_args(workspace, out, "--max_steps", "3", "--eval_strategy", "no", "--save_steps", "3"))
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["modules_to_save"]) == {"delta_module", "image_projector", "delta_projector"}

    pipe = pipeline("image-difference-captioning", model=str(final), trust_remote_code=True)
    processor = pipe.processor
    batch = processor(images=[(random_image(3), random_image(4))], text=["What changed?"], return_tensors="pt")
    base = OneDiffForConditionalGeneration.from_pretrained(workspace / "tiny-model").eval()
    with torch.no_grad():
        base_logits = base(**batch).logits
        reloaded = PeftModel.from_pretrained(base, out / "adapter").eval()
        adapted = reloaded(**batch).logits
        merged = pipe.model(**batch).logits
    assert not torch.allclose(adapted, base_logits)
    torch.testing.assert_close(adapted, merged, atol=1e-4, rtol=1e-4)
    generated = reloaded.generate(**batch, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 4

    # final/ carries its recipe and a card; what is pushed is the merged model, never the adapter alone
    card = ModelCard.load(final / "README.md")
    assert card.data.datasets == ["data"] and "max_steps: 3" in card.text and "train/sft.py" in card.text
    record = json.loads((final / "onediff_training.json").read_text())
    assert record["arguments"]["use_peft"] is True and record["start"] == str(workspace / "tiny-model")
    with pytest.raises(ValueError, match="only a LoRA adapter"):
        push_checkpoint(out / "adapter", "someone/onediff-lora")
    pushed = Path(push_checkpoint(final, "someone/onediff-lora", to_folder=tmp_path / "repo"))
    assert not list(pushed.glob("adapter*")) and (pushed / "README.md").is_file()
    merged_weights, pushed_weights = (load_file(p / "model.safetensors") for p in (final, pushed))
    assert merged_weights.keys() == pushed_weights.keys()
    assert all(torch.equal(merged_weights[k], pushed_weights[k]) for k in merged_weights)
    again = pipeline("image-difference-captioning", model=str(pushed), trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(again.model(**batch).logits, merged)


@pytest.mark.parametrize("script", [pretrain_coupled, sft])
def test_bad_setups_fail_before_any_work(workspace, tmp_path, script):
    make = stage1_args if script is pretrain_coupled else sft_args
    with pytest.raises(ValueError, match="No DiffCap dataset"):
        script.main(make(workspace, tmp_path / "a", "--dataset_path", str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="no folder at"):
        script.main(make(workspace, tmp_path / "b", "--model_name_or_path", str(tmp_path / "missing")))
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"learning_rat": 0.1}))
    argv = make(workspace, tmp_path / "c")
    argv[1] = str(recipe)
    with pytest.raises(ValueError, match="learning_rat"):
        script.main(argv)
    from datasets import Dataset, DatasetDict

    DatasetDict(
        {"train": Dataset.from_dict({"text": ["x"]}), "captions": Dataset.from_dict({"text": ["x"]})}
    ).save_to_disk(str(tmp_path / "foreign"))
    with pytest.raises(ValueError, match="lacks column"):
        script.main(make(workspace, tmp_path / "d", "--dataset_path", str(tmp_path / "foreign")))
    assert not any((tmp_path / name).exists() for name in "abcd")  # nothing was started


def stand_in_start_points(recipes) -> None:
    """Empty stand-ins for the checkpoints `recipes` start from (parsing checks that they exist)."""
    for recipe in recipes:
        start = Path(os.path.expanduser(yaml.safe_load(recipe.read_text())["model_name_or_path"]))
        start.mkdir(parents=True, exist_ok=True)
        (start / "config.json").write_text("{}")


def test_every_recipe_and_launch_config_is_valid():
    from trl import SFTConfig

    from onediff_idc.train.common import ModelArguments

    fields = {
        "pretrain_coupled": [ModelArguments, pretrain_coupled.CoupledTrainingArguments],
        "sft": [ModelArguments, sft.OneDiffSFTArguments, SFTConfig],
    }
    recipes = sorted(CONFIGS.glob("*/pretrain_coupled.yaml")) + sorted(CONFIGS.glob("*/sft.yaml"))
    assert {p.parent.name for p in recipes} == {"tiny_cpu", "default", "onediff_7b"}
    for recipe in recipes:
        keys = set(yaml.safe_load(recipe.read_text()))
        known = {f for cls in fields[recipe.stem] for f in cls.__dataclass_fields__}
        assert keys <= known, (recipe, keys - known)
    for recipe in (p for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "accelerate"):  # TRL: bf16 by default
        values = yaml.safe_load(recipe.read_text())
        if values.get("use_cpu"):
            assert values.get("bf16") is False, recipe
    sft_recipe = yaml.safe_load((CONFIGS / "onediff_7b" / "sft.yaml").read_text())
    values = {k: v for k, v in sft_recipe.items() if k in SFTConfig.__dataclass_fields__}
    SFTConfig(**{**values, "bf16": False, "use_cpu": True})  # bf16 needs the GPU the recipe is for
    for launch in sorted((CONFIGS / "accelerate").glob("*.yaml")):
        config = ClusterConfig.from_yaml_file(launch)
        assert config.distributed_type is not None
    fsdp = ClusterConfig.from_yaml_file(CONFIGS / "accelerate" / "fsdp2.yaml")
    assert fsdp.fsdp_config["fsdp_version"] == 2


def test_the_default_models_recipes_parse_chain_and_are_listed_in_order_in_the_readme(tmp_path, monkeypatch):
    """Each recipe in train/configs/default/ parses with its own script's parser, starts from the previous recipe's
    output, and the README runs them in that order with the right script, then exports the last one."""
    monkeypatch.chdir(tmp_path)  # the recipes' run folders, stand-ins here: parsing checks that they exist
    monkeypatch.setenv("HOME", str(tmp_path))
    stand_in_start_points((CONFIGS / "default").glob("*.yaml"))
    parsers = {"pretrain_coupled": pretrain_coupled.parse, "pretrain_delta": pretrain_delta.parse, "sft": sft.parse}
    readme = (REPO / "README.md").read_text()
    steps = []
    for recipe in sorted((CONFIGS / "default").glob("*.yaml")):
        command = re.search(rf"train/(\w+)\.py\s*(?:\\\s*)?--config train/configs/default/{recipe.name}", readme)
        assert command, f"the README does not run {recipe.name}"
        model_args, *args = parsers[command.group(1)](["--config", str(recipe)])
        output_dir = next(a.output_dir for a in args if hasattr(a, "output_dir"))  # sft.py: in the SFTConfig
        steps.append((command.start(), model_args.model_name_or_path, output_dir))
    steps.sort()
    assert steps[0][1].endswith("default-base")  # what `onediff setup` assembles
    for (_, _, previous_output), (_, start, _) in pairwise(steps):
        assert start == f"{previous_output}/final"
    assert f"export --from {steps[-1][2]}" in readme
    assert "bash train/configs/default/ablations.sh" in readme
    assert "bash train/configs/default/curves.sh" in readme


def test_the_next_default_models_recipes_parse_and_chain(tmp_path, monkeypatch):
    """train/configs/default-v2/: the change-bottleneck design, heads (pretrain_delta) then phrasing (sft)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    heads_recipe, phrase_recipe = CONFIGS / "default-v2" / "heads.yaml", CONFIGS / "default-v2" / "phrase.yaml"
    stand_in_start_points([heads_recipe, phrase_recipe])
    heads_model, heads_args = pretrain_delta.parse(["--config", str(heads_recipe)])
    assert heads_model.model_name_or_path.endswith("default-base") and heads_args.change_bottleneck
    assert heads_model.model_config_overrides["delta_zoom_patches"] == 16
    phrase_model, phrase_args, _ = sft.parse(["--config", str(phrase_recipe)])
    assert phrase_model.model_name_or_path == f"{heads_args.output_dir}/final" and phrase_args.phrase_true_change
    readme = (REPO / "README.md").read_text()
    assert "--config train/configs/default-v2/heads.yaml" in readme
    assert "--config train/configs/default-v2/phrase.yaml" in readme
    # the scripts that run them: valid bash, the same recipes, evaluation of what the phrasing run wrote
    scripts = CONFIGS / "default-v2"
    for script in [*scripts.glob("*.sh"), CONFIGS / "default" / "curves-zoom.sh", CONFIGS / "evaluate-default.sh"]:
        subprocess.run(["bash", "-n", str(script)], check=True)
    # the ablation is the shipped recipe with one part off
    ablation = CONFIGS / "default-v2" / "heads-no-align.yaml"
    ablated_model, ablated_args = pretrain_delta.parse(["--config", str(ablation)])
    changed = {k: v for k, v in vars(ablated_args).items() if vars(heads_args)[k] != v}
    assert set(changed) <= {"output_dir", "logging_dir"} and ablated_args.output_dir == "runs/default-v2-heads-no-align"
    overrides = heads_model.model_config_overrides
    assert (
        ablated_model.model_config_overrides == {**overrides, "delta_alignment": False} and overrides["delta_alignment"]
    )
    assert f"heads {ablation.relative_to(REPO)} {ablated_args.output_dir}\n" in (scripts / "ablations.sh").read_text()
    train_script = (scripts / "train.sh").read_text()
    assert f"heads {heads_recipe.relative_to(REPO)} {heads_args.output_dir}\n" in train_script
    assert f"--config {phrase_recipe.relative_to(REPO)}" in train_script
    phrase_output = yaml.safe_load(phrase_recipe.read_text())["output_dir"]
    assert f"export --from {phrase_output}" in (scripts / "evaluate.sh").read_text()
    assert "bash train/configs/default-v2/train.sh" in readme and "bash train/configs/default-v2/evaluate.sh" in readme


def test_v4_recipe_starts_from_the_towers_and_reads_every_folder_its_data_script_builds(tmp_path, monkeypatch):
    """train/configs/default-v4/: heads from what `onediff setup` assembles (no older weights) on the generated and
    the wild training pairs, each folder with its own feature cache, then the phrasing of the same folders."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    scripts = CONFIGS / "default-v4"
    heads_recipe, phrase_recipe = scripts / "heads.yaml", scripts / "phrase.yaml"
    stand_in_start_points([heads_recipe, phrase_recipe])
    heads_model, heads_args = pretrain_delta.parse(["--config", str(heads_recipe)])
    assert heads_model.model_name_or_path.endswith("default-base") and heads_args.change_bottleneck
    overrides = heads_model.model_config_overrides
    from onediff_idc.train.learning_curve import DESIGNS

    assert overrides == DESIGNS["v4"]  # the design its curves chose: v3's plus the alignment and the pixel summary
    assert "--designs v3 v3-align-queries v4 " in (scripts / "curves.sh").read_text()
    folders = [heads_args.dataset_path, *heads_args.extra_dataset_path]
    assert len(set(heads_args.extra_feature_cache_dir)) == len(heads_args.extra_dataset_path) == 3
    phrase_model, phrase_args, _ = sft.parse(["--config", str(phrase_recipe)])
    assert phrase_model.model_name_or_path == f"{heads_args.output_dir}/final" and phrase_args.phrase_true_change
    assert [phrase_args.dataset_path, *phrase_args.extra_dataset_path] == folders
    data_script = (scripts / "data.sh").read_text()
    assert all(re.search(rf"(wild|build) {re.escape(folder)} ", data_script) for folder in folders), folders
    assert "--splits train" in data_script and "--splits test" not in data_script  # no held-out material
    for script in scripts.glob("*.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    train_script = (scripts / "train.sh").read_text()
    assert f"heads {heads_recipe.relative_to(REPO)} {heads_args.output_dir}\n" in train_script
    assert f"--config {phrase_recipe.relative_to(REPO)}" in train_script
    assert "default_weights" not in train_script and "git checkout" not in train_script
    evaluate = (scripts / "evaluate.sh").read_text()
    assert f"export --from {yaml.safe_load(phrase_recipe.read_text())['output_dir']}\n" in evaluate
    assert f"set-schema --data {' '.join(folders)}\n" in evaluate  # the schema of every pair v4 trained on
    # calibrated on validation pairs of material and seeds used for nothing else, before the held-out evaluation
    assert "--seed 20 " in evaluate and "--data runs/calib-s20 runs/v4/wild-val --split validation" in evaluate
    assert (
        evaluate.index("set-schema")
        < evaluate.index("calibrate_no_change.py")
        < evaluate.index("bash train/configs/evaluate-default")
    )
    assert "--splits test" in evaluate and "python -m onediff_idc.eval.wild docs/eval-wild-s{1,2,3}.json" in evaluate


def test_v3_recipe_fine_tunes_v2s_reading_with_the_pixels_on_more_hard_pairs(tmp_path, monkeypatch):
    """train/configs/default-v3/: v2's shipped reading + pixel statistics, fine-tuned on colour/material/no-change
    pairs plus pairs drawn like v2's, all built by its data.sh."""
    monkeypatch.chdir(tmp_path)
    v3 = CONFIGS / "default-v3" / "heads.yaml"
    recipe = yaml.safe_load(v3.read_text())
    start = Path(recipe["model_name_or_path"])
    start.mkdir(parents=True)
    (start / "config.json").write_text("{}")
    model_args, args = pretrain_delta.parse(["--config", str(v3)])
    assert model_args.model_config_overrides == {"delta_pixel_statistics": True} and args.change_bottleneck
    scripts = CONFIGS / "default-v3"
    train_script, data_script = (scripts / "train.sh").read_text(), (scripts / "data.sh").read_text()
    # the starting point is exported from the shipped weights, and only while they are still v2's
    assert f"START={recipe['model_name_or_path']}" in train_script and 'onediff export --out "$START' in train_script
    assert '"delta_pixel_statistics"' in train_script and "config_overrides.json" in train_script
    assert f"EXTRA={recipe['extra_dataset_path']}" in data_script and "--scene-types color texture none" in data_script
    assert f"REPLAY={recipe['dataset_path']}" in data_script
    # step 2 continues from step 1's result with more photo edits; step 3 from step 2's, on its pairs, reading the
    # mirror token; its result is what ships
    photos = yaml.safe_load((scripts / "heads-photos.yaml").read_text())
    assert photos["model_name_or_path"] == f"{recipe['output_dir']}/final"
    assert photos["dataset_path"] == recipe["dataset_path"] and f"build {photos['extra_dataset_path']} " in data_script
    mirror = yaml.safe_load((scripts / "heads-mirror.yaml").read_text())
    assert mirror["model_name_or_path"] == f"{photos['output_dir']}/final"
    assert mirror["model_config_overrides"] == {"delta_mirror_statistics": True}
    assert (mirror["dataset_path"], mirror["extra_dataset_path"]) == (
        photos["dataset_path"],
        photos["extra_dataset_path"],
    )
    for name, step in (("heads", recipe), ("heads-photos", photos), ("heads-mirror", mirror)):
        assert f"heads train/configs/default-v3/{name}.yaml {step['output_dir']}" in train_script
    assert train_script.index("heads-photos.yaml runs") < train_script.index("heads-mirror.yaml runs")
    evaluate = (scripts / "evaluate.sh").read_text()
    assert f"replace-reading --heads {mirror['output_dir']}/final" in evaluate
    # the "no change" threshold is calibrated on a seed of its own, after the schema, before the held-out evaluation
    assert "--seed 20 " in evaluate and "--apply onediff_idc/default_weights/config_overrides.json" in evaluate
    assert (
        evaluate.index("set-schema")
        < evaluate.index("calibrate_no_change.py")
        < evaluate.index("bash train/configs/evaluate-default")
    )
    data = (recipe["dataset_path"], recipe["extra_dataset_path"], photos["extra_dataset_path"])
    assert f"set-schema --data {' '.join(data)}" in evaluate  # the schema of every pair v3 trained on
    # each ablation is its step with one part off, run by ablations.sh
    ablations = (scripts / "ablations.sh").read_text()
    for step, ablation, overrides in (
        (recipe, "heads-no-pixels", {}),  # v2's reading has none
        (mirror, "heads-no-mirror", {}),  # step 2's result has none
        (mirror, "heads-no-align", {"delta_mirror_statistics": True, "delta_alignment": False}),
    ):
        ablated = yaml.safe_load((scripts / f"{ablation}.yaml").read_text())
        changed = {k for k in {*step, *ablated} if step.get(k) != ablated.get(k)}
        assert changed == {"output_dir", "model_config_overrides"}, changed
        assert ablated.get("model_config_overrides", {}) == overrides
        assert f"heads train/configs/default-v3/{ablation}.yaml {ablated['output_dir']}\n" in ablations
    for script in scripts.glob("*.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert "bash train/configs/default-v3/train.sh" in (REPO / "README.md").read_text()


def test_sft_loss_falls_when_overfitting_a_fixed_batch(workspace, tmp_path):
    out = tmp_path / "overfit"
    argv = sft_args(workspace, out, "--use_peft", "false", "--max_train_samples", "2", "--max_steps", "25")
    sft.main([*argv, "--learning_rate", "3e-3", "--eval_strategy", "no", "--save_steps", "25", "--warmup_steps", "0"])
    state = json.loads((out / "checkpoint-25" / "trainer_state.json").read_text())
    history = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert sum(history[-3:]) / 3 < 0.5 * history[0], history


def test_stage1_refuses_a_split_of_pairs(workspace, tmp_path):
    with pytest.raises(ValueError, match="single-image caption samples"):
        pretrain_coupled.main(stage1_args(workspace, tmp_path / "run", "--dataset_split", "train"))
    assert not (tmp_path / "run").exists()


def test_delta_supervision_caches_features_learns_and_resumes_exactly(workspace, tmp_path):
    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)  # one query per change field

    def run(out: Path, *extra: str) -> Path:
        args = ["--model_name_or_path", model, "--dataset_path", workspace / "data", "--output_dir", out]
        args += ["--feature_cache_dir", tmp_path / "features", "--per_device_train_batch_size", "4"]
        args += ["--learning_rate", "3e-3", "--logging_steps", "1", *extra]
        return pretrain_delta.main([str(a) for a in args])

    straight = run(tmp_path / "straight", "--num_train_epochs", "8", "--report_to", "tensorboard")
    board = tensorboard_scalars(tmp_path / "straight" / "runs" / "pretrain_delta", "eval_exact")
    expected = logged(tmp_path / "straight" / "log.jsonl", "eval_exact")
    assert [s for s, _ in board] == [s for s, _ in expected] and len(board) == 8
    np.testing.assert_allclose([v for _, v in board], [v for _, v in expected], rtol=1e-6)
    cached = tmp_path / "features" / "train.npy"
    cached_at = cached.stat().st_mtime_ns
    report = json.loads((tmp_path / "straight" / "report.json").read_text())
    assert {"type", "color", "shape", "direction"} <= set(report["vocab"])
    assert len(report["epochs"]) == 8 and set(report["difference_norms"]) >= {"no_change", "blur"}
    train_losses = losses(tmp_path / "straight" / "log.jsonl")
    assert sum(train_losses[-3:]) < 0.7 * sum(train_losses[:3])

    # interrupted after 3 of 8 epochs, resumed: exactly the straight run (features reused, not rebuilt)
    stopped = run(tmp_path / "resumed", "--num_train_epochs", "8", "--stop_after_epochs", "3")
    marker = json.loads((stopped / "checkpoint_complete.json").read_text())
    straight_steps = json.loads((tmp_path / "straight" / "log.jsonl").read_text().splitlines()[-1])["step"]
    assert marker["step"] * 8 == straight_steps * 3 and len(marker["report"]["epochs"]) == 3
    assert not (tmp_path / "resumed" / "final").exists()
    resumed = run(tmp_path / "resumed", "--num_train_epochs", "8", "--resume", "latest")
    assert cached.stat().st_mtime_ns == cached_at
    first, second = (load_file(p / "model.safetensors") for p in (straight, resumed))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert losses(tmp_path / "resumed" / "log.jsonl") == train_losses
    # only the delta module learned
    untouched = load_file(model / "model.safetensors")
    changed = {k.split(".")[1] for k in first if not torch.equal(first[k], untouched[k])}
    assert changed == {"delta_module"}


def test_zoomed_delta_module_trains_from_its_compact_inputs(workspace, tmp_path):
    zoom = {"delta_zoom_patches": 4, "delta_shift_tolerance": 1, "delta_difference_prior": 1.0}
    model_dir = save_tiny_model(
        tmp_path / "model", num_delta_queries=12, delta_global_difference=True, delta_alignment=True, **zoom
    )
    args = ["--model_name_or_path", model_dir, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "out"]
    args += ["--feature_cache_dir", tmp_path / "features", "--per_device_train_batch_size", "4"]
    pretrain_delta.main([str(a) for a in [*args, "--num_train_epochs", "2"]])
    compact = sorted((tmp_path / "features").glob("*.zoom-*.npz"))
    assert [p.name.split(".")[0] for p in compact] == ["train", "validation"]
    built_at = compact[0].stat().st_mtime_ns

    # the compact inputs are the full features' inputs: the same delta queries, from 4 of the 16 patches
    model = OneDiffForConditionalGeneration.from_pretrained(model_dir)
    module = model.model.delta_module
    torch.nn.init.normal_(module.difference_prior_scale)  # a prior that matters (it starts at 0)
    path = tmp_path / "features" / "train.npy"
    features = np.load(path, mmap_mode="r")
    inputs = pretrain_delta.delta_inputs(module, features, path)
    assert compact[0].stat().st_mtime_ns == built_at  # read back, not rebuilt
    assert inputs.zoomed["before_after"].shape == (len(features), 2, 3, 4, features.shape[-1])
    indices = np.array([5, 0, 3, 1])
    with torch.no_grad():
        from_compact = pretrain_delta.delta_queries(model, inputs, indices)
        from_features = pretrain_delta.delta_queries(model, pretrain_delta.DeltaInputs(module, features), indices)
        rows = torch.from_numpy(np.asarray(features[indices])).float()  # (B, 2, L, N, D)
        layers = range(rows.shape[2])
        forward = module([rows[:, 0, i] for i in layers], [rows[:, 1, i] for i in layers]).last_hidden_state
    torch.testing.assert_close(from_compact, forward)
    torch.testing.assert_close(from_features, forward)
    # another zoom is another cache
    model.config.delta_zoom_patches = 6
    assert pretrain_delta.delta_inputs(module, features, path).zoomed["patches"].shape == (len(features), 6)
    assert len(list((tmp_path / "features").glob("train.zoom-*.npz"))) == 2

    # a design reading fewer layers shares the cache of more: its inputs are those layers' own
    fewer = OneDiffForConditionalGeneration.from_pretrained(
        model_dir, delta_feature_layers=[1, 3], ignore_mismatched_sizes=True
    )
    fewer_module = fewer.model.delta_module
    with torch.no_grad():
        from_shared = pretrain_delta.delta_queries(
            fewer, pretrain_delta.delta_inputs(fewer_module, features, path), indices
        )
        forward = fewer_module([rows[:, 0, i] for i in (0, 2)], [rows[:, 1, i] for i in (0, 2)]).last_hidden_state
    torch.testing.assert_close(from_shared, forward)
    assert len(list((tmp_path / "features").glob("train.zoom-*.npz"))) == 3
    beyond = OneDiffForConditionalGeneration.from_pretrained(
        model_dir, delta_feature_layers=[0, 1], ignore_mismatched_sizes=True
    )
    with pytest.raises(ValueError, match=r"missing \[0\]"):
        pretrain_delta.delta_inputs(beyond.model.delta_module, features, path)


@pytest.mark.parametrize("detail", [False, True], ids=["v3", "v4-detail-align-queries"])
def test_pixel_statistics_are_cached_beside_the_features_and_read_as_the_model_reads_them(workspace, tmp_path, detail):
    design = {"delta_zoom_patches": 4, "delta_shift_tolerance": 1, "delta_difference_prior": 1.0}
    design["delta_mirror_statistics"] = True  # from the pixel cache directly, not the zoom's
    if detail:  # the pixel summary too; the alignment reaches the queries from the zoom's cache
        design |= {"delta_pixel_detail": True, "delta_alignment": True, "delta_alignment_queries": True}
    model_dir = save_tiny_model(tmp_path / "model", num_delta_queries=12, delta_pixel_statistics=True, **design)
    args = ["--model_name_or_path", model_dir, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "out"]
    args += ["--feature_cache_dir", tmp_path / "features", "--per_device_train_batch_size", "4"]
    pretrain_delta.main([str(a) for a in [*args, "--num_train_epochs", "1"]])
    name = "pixels-detail" if detail else "pixels"  # a cache of its own: the statistics differ
    pixels_path = tmp_path / "features" / f"train.{name}.npy"
    assert pixels_path.is_file() and (tmp_path / "features" / f"validation.{name}.npy").is_file()
    assert not (tmp_path / "features" / f"train.{'pixels' if detail else 'pixels-detail'}.npy").exists()

    model = OneDiffForConditionalGeneration.from_pretrained(model_dir)
    processor = OneDiffProcessor.from_pretrained(model_dir)
    module = model.model.delta_module
    torch.nn.init.normal_(module.difference_prior_scale)  # priors that matter (they start at 1 everywhere)
    torch.nn.init.normal_(module.pixel_prior_scale)
    train = load_diffcap(workspace / "data", splits=("train",))["train"]
    indices = np.array([5, 0, 3, 1])
    pixels = np.load(pixels_path)
    images = [train[int(i)]["images"] for i in indices]
    by_processor = pretrain_delta.pair_pixel_statistics(processor, images, 8, detail)
    torch.testing.assert_close(torch.from_numpy(pixels[indices]), by_processor)
    assert by_processor.shape[-1] == (9 if detail else 6)
    features_path = tmp_path / "features" / "train.npy"
    features = np.load(features_path, mmap_mode="r")
    with torch.no_grad():
        compact = pretrain_delta.delta_inputs(module, features, features_path, pixels_path=pixels_path)
        from_compact = pretrain_delta.delta_queries(model, compact, indices)
        rows = torch.from_numpy(np.asarray(features[indices])).float()  # (B, 2, L, N, D)
        layers = range(rows.shape[2])
        forward = module(
            [rows[:, 0, i] for i in layers], [rows[:, 1, i] for i in layers], pixel_statistics=by_processor
        ).last_hidden_state
    assert set(compact.zoomed) >= {"pixel_statistics", "pixel_change", "mirror", *(["pixel_summary"] if detail else [])}
    torch.testing.assert_close(from_compact, forward)
    if detail:  # the whole model computes the detail from the pixels too (else the module refuses 6 statistics)
        pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            assert model.get_image_features(pixel_values).delta_hidden_states.shape[0] == len(indices)
    with pytest.raises(ValueError, match="pixels_path"):
        pretrain_delta.delta_inputs(module, features, features_path)


def test_extra_dataset_joins_the_training_pairs_with_its_own_cache(workspace, tmp_path):
    extra = tmp_path / "extra"
    spec = BuildSpec(seed=2, scene_pairs=6, photo_pairs=0, caption_samples=0, eval_fraction=0, resolution=48)
    build(BuildSpec(**{**spec.__dict__, "scene_types": ("none", "color")}), extra, progress=False)
    model_dir = save_tiny_model(tmp_path / "model", num_delta_queries=12, delta_zoom_patches=4)
    args = ["--model_name_or_path", model_dir, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "out"]
    args += ["--per_device_train_batch_size", "4", "--logging_steps", "1", "--extra_dataset_path", extra]
    pretrain_delta.main([str(a) for a in [*args, "--num_train_epochs", "1"]])
    assert (tmp_path / "out" / "features-extra" / "train.npy").is_file()
    record = json.loads((tmp_path / "out" / "final" / "onediff_training.json").read_text())
    assert record["datasets"] == ["data", "extra"]  # the card names both
    pairs = len(load_diffcap(workspace / "data", splits=("train",))["train"]) + 6
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert max(record["step"] for record in log) == -(-pairs // 4)  # one epoch over both sets
    everything = save_tiny_model(tmp_path / "unzoomed", num_delta_queries=12)
    with pytest.raises(ValueError, match="delta_zoom_patches"):
        pretrain_delta.main([str(a) for a in [*args[:1], everything, *args[2:], "--output_dir", tmp_path / "x"]])


def wild_folder(folder: Path, stamps: Path) -> Path:
    """A DiffCap folder whose train split holds wild pairs of every photo and object kind (the tiny stamps)."""
    from datasets import Dataset, DatasetDict
    from test_wild import tiny_stamps

    from onediff_idc.processing.schema import FEATURES, save_diffcap
    from onediff_idc.processing.wild import WildSpec, wild_rows

    tiny_stamps(stamps)
    rows = wild_rows(WildSpec(per_type=1, resolution=48, stamps=str(stamps)), "test", progress=False)
    save_diffcap(DatasetDict({"train": Dataset.from_list(rows, features=FEATURES)}), folder)
    return folder


def test_heads_learn_the_closed_facts_of_wild_pairs_beside_several_extra_folders(workspace, tmp_path):
    """Wild pairs join the generated ones (two extra folders, each its own cache); the heads get a class for every
    closed fact (object changes, the 3x3 grid's cells, unrelated pictures, camera moves), never for a name or how
    the pair was made."""
    wild = wild_folder(tmp_path / "wild", tmp_path / "stamps")
    extra = tmp_path / "extra"
    build(BuildSpec(seed=2, scene_pairs=4, photo_pairs=0, caption_samples=0, eval_fraction=0, resolution=48), extra)
    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)
    args = ["--model_name_or_path", model, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "heads"]
    args += ["--per_device_train_batch_size", "8", "--num_train_epochs", "1", "--change_bottleneck", "true"]
    args += ["--extra_dataset_path", wild, extra, "--config", tmp_path / "heads.yaml"]
    (tmp_path / "heads.yaml").write_text("model_config_overrides: {delta_zoom_patches: 4}\n")
    heads = pretrain_delta.main([str(a) for a in args])
    config = json.loads((heads / "config.json").read_text())
    fields = config["delta_change_fields"]
    assert {"object_add", "object_move", "object_replace", "unrelated", "camera", "none"} <= set(fields["type"])
    assert {"top", "left", "bottom right"} <= set(fields["position"]) and "to" in fields
    assert not {"object", "new_object", "nuisance", "quality", "motion"} & set(fields)
    assert {"fox", "cup", "pear"}.isdisjoint(v for values in fields.values() for v in values)
    assert config["delta_change_schema"]["object_move"].keys() == {"position", "to"}
    assert config["delta_change_schema"]["object_replace"].keys() == {"position"}
    assert (tmp_path / "heads" / "features-extra" / "train.npy").is_file()
    assert (tmp_path / "heads" / "features-extra-1" / "train.npy").is_file()
    log = [json.loads(line) for line in (tmp_path / "heads" / "log.jsonl").read_text().splitlines()]
    pairs = len(load_diffcap(workspace / "data", splits=("train",))["train"]) + 35 + 4  # 35 kinds, one pair each
    assert max(record["step"] for record in log) == -(-pairs // 8)
    record = json.loads((heads / "onediff_training.json").read_text())
    assert record["datasets"] == ["data", "wild", "extra"]
    with pytest.raises(ValueError, match="names 1 caches for 2"):
        pretrain_delta.main([str(a) for a in [*args, "--extra_feature_cache_dir", tmp_path / "c"]])

    # the phrasing learns every wild kind from its heads' part, beside the generated pairs (no name is phrased)
    from onediff_idc.processing.schema import with_head_changes

    wild_rows = with_head_changes(load_diffcap(wild)["train"])
    canonical = sft.with_canonical_completions(wild_rows)
    assert [parse_caption(c) for c in canonical["completion"]] == [json.loads(c) for c in wild_rows["change"]]
    assert not any(noun in c for c in canonical["completion"] for noun in ("fox", "cup", "pear"))
    extra = ["--model_name_or_path", str(heads), "--phrase_true_change", "true", "--canonical_phrasing", "true"]
    extra += ["--extra_dataset_path", str(wild), "--max_steps", "1", "--eval_strategy", "no", "--save_steps", "1"]
    final = sft.main(sft_args(workspace, tmp_path / "phrasing", *extra))
    assert json.loads((final / "onediff_training.json").read_text())["datasets"] == ["data", "wild"]


def test_head_changes_keep_the_closed_facts_only():
    from onediff_idc.processing.schema import head_change

    screen = {"type": "screen_text", "element": "button", "old_text": "Save", "new_text": "Send", "position": "top"}
    assert head_change(json.dumps(screen)) == {"type": "screen_text", "element": "button", "position": "top"}
    moved = {"type": "object_move", "object": "fox", "position": "top left", "to": "bottom right"}
    assert head_change(moved) == {"type": "object_move", "position": "top left", "to": "bottom right"}
    assert head_change({"type": "none", "nuisance": "jpeg", "quality": 75}) == {"type": "none"}
    scene = {"type": "color", "size": "small", "color": "red", "material": "metal", "shape": "cube"}
    scene["new_value"] = "blue"
    assert head_change(scene) == scene


def test_word_targets_pull_delta_tokens_onto_value_embeddings(workspace, tmp_path):
    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)
    args = ["--model_name_or_path", model, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "out"]
    args += ["--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--num_train_epochs", "6"]
    final = pretrain_delta.main([str(a) for a in [*args, "--word_targets", "true"]])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert all("exact" in epoch["words"] and "type" in epoch["words"]["fields"] for epoch in report["epochs"])
    untouched, trained = load_file(model / "model.safetensors"), load_file(final / "model.safetensors")
    changed = {k.split(".")[1] for k in trained if not torch.equal(trained[k], untouched[k])}
    assert changed == {"delta_module", "delta_projector"}

    # the targets themselves: a token equal to a value's embedding costs nothing and is read back as that value
    vocab = {"type": ["color", "color_cast", "none"], "size": ["large", "small"]}
    tokenizer = OneDiffProcessor.from_pretrained(model).tokenizer
    embeddings = torch.randn(len(tokenizer), 8)
    words = pretrain_delta.WordTargets(vocab, embeddings, tokenizer)
    labels = torch.tensor([[1, 0], [2, 1], [0, -100]])
    tokens = torch.stack([torch.stack([words.tables[0][t], words.tables[1][max(s, 0)]]) for t, s in labels.tolist()])
    assert words.loss(tokens, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert words.predict(tokens)[:, 0].tolist() == [1, 2, 0]
    assert words.loss(tokens + 0.5, labels).item() > 0
    assert not torch.equal(words.tables[0][0], words.tables[0][1])  # "color" and "color cast" differ


def test_delta_supervision_needs_ground_truth_changes(workspace, tmp_path):
    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)
    args = ["--model_name_or_path", model, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "out"]
    with pytest.raises(ValueError, match="ground-truth `change`"):
        pretrain_delta.main([str(a) for a in [*args, "--dataset_train_split", "captions"]])
    with pytest.raises(ValueError, match="change fields need as many delta queries"):
        pretrain_delta.main([str(a) for a in [*args[:1], save_tiny_model(tmp_path / "small"), *args[2:]]])


def test_generic_prompt_mix_replaces_a_seeded_share_of_prompts_only(workspace):
    from modeling_onediff.pipeline_onediff import DEFAULT_PROMPT
    from onediff_idc.train.common import load_pairs

    pairs = load_pairs(str(workspace / "data"), "train")
    assert DEFAULT_PROMPT not in pairs["prompt"]
    mixed = sft.mix_in_generic_prompt(pairs, 0.5, seed=0)
    assert sorted(mixed.column_names) == sorted(pairs.column_names)
    changed = [new != old for new, old in zip(mixed["prompt"], pairs["prompt"])]
    assert 0 < sum(changed) < len(pairs) and all(p == DEFAULT_PROMPT for p, c in zip(mixed["prompt"], changed) if c)
    assert (
        mixed["completion"] == pairs["completion"]
        and mixed["prompt"] == sft.mix_in_generic_prompt(pairs, 0.5, 0)["prompt"]
    )
    assert sft.mix_in_generic_prompt(pairs, 0.0, seed=0) is pairs
    with pytest.raises(ValueError, match="generic_prompt_fraction"):
        sft.main(sft_args(workspace, workspace / "unused", "--generic_prompt_fraction", "1.5"))


def test_learning_curves_plot_every_source_of_wild_and_generated_data(tmp_path):
    """Five sources and more (the generators' and the wild kinds) each get a line style of their own."""
    from onediff_idc.train import learning_curve

    sources = ["scene-change", "photo-edit", "wild-object", "wild-photo", "wild-screen", "wild-other"]
    points = [{"pairs_seen": n, **{s: {"exact": 0.1 * i, "pairs": 3} for i, s in enumerate(sources)}} for n in (8, 16)]
    learning_curve.plot({"v3": points, "v3-zoom32": points}, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_learning_curves_give_designs_with_and_without_the_pixel_detail_their_own_pixel_caches(workspace, tmp_path):
    from onediff_idc.train import learning_curve

    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)
    args = ["--base", model, "--data", workspace / "data", "--out", tmp_path / "curves", "--designs", "v3", "v4"]
    args += ["--feature_cache_dir", tmp_path / "features", "--batch_size", "4", "--milestones", "4"]
    curves = learning_curve.main([str(a) for a in args])
    assert [p["pairs_seen"] for p in curves["v3"]] == [p["pairs_seen"] for p in curves["v4"]] == [4]
    cached = (
        np.load(tmp_path / "features" / "train.pixels.npy"),
        np.load(tmp_path / "features" / "train.pixels-detail.npy"),
    )
    assert cached[0].shape[-1] == 6 and cached[1].shape[-1] == 9
    np.testing.assert_array_equal(cached[0], cached[1][..., :6])  # the same statistics, the detail added


def test_learning_curves_score_each_design_and_a_rerun_continues_exactly(workspace, tmp_path):
    from onediff_idc.train import learning_curve

    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)  # one query per change field

    def run(out: Path, *milestones: int) -> dict:
        args = ["--base", model, "--data", workspace / "data", "--out", out, "--designs", "baseline", "prior"]
        args += ["--feature_cache_dir", tmp_path / "features", "--batch_size", "4", "--learning_rate", "3e-3"]
        return learning_curve.main([str(a) for a in [*args, "--milestones", *milestones]])

    def without_times(curves: dict) -> dict:
        return {
            name: [{k: v for k, v in p.items() if k != "train_seconds"} for p in points]
            for name, points in curves.items()
        }

    straight = run(tmp_path / "straight", 8, 16)
    assert set(straight) == {"baseline", "prior"}
    for points in straight.values():
        assert [p["pairs_seen"] for p in points] == [8, 16]
        assert all(0 <= p[s]["exact"] <= 1 and p[s]["pairs"] > 0 for p in points for s in learning_curve.SOURCES)
        assert set(points[-1]["photo-edit"]["by_change_type"]) <= {*PHOTO_TYPES, "no_change"}
    record = json.loads((tmp_path / "straight" / "curves.json").read_text())
    assert record["designs"]["prior"] == {"delta_difference_prior": 1.0}
    assert (tmp_path / "straight" / "curves.png").read_bytes()[:4] == b"\x89PNG"

    # stopped after the first milestone, then continued: the same curve and the same delta module
    run(tmp_path / "resumed", 8)
    assert without_times(run(tmp_path / "resumed", 8, 16)) == without_times(straight)
    for name in straight:
        first, second = (
            torch.load(p / name / "state.pt", weights_only=False) for p in (tmp_path / "straight", tmp_path / "resumed")
        )
        assert all(torch.equal(first["delta_module"][k], second["delta_module"][k]) for k in first["delta_module"])

    # a curve on one confusion: only those change types are trained and scored
    focused = learning_curve.main(
        [str(a) for a in ["--base", model, "--data", workspace / "data", "--out", tmp_path / "focused"]]
        + ["--designs", "baseline", "--feature_cache_dir", str(tmp_path / "focused-features"), "--batch_size", "4"]
        + ["--milestones", "4", "--change_types", "no_change", "color", "brightness"]
    )
    for source in learning_curve.SOURCES:
        assert set(focused["baseline"][0][source]["by_change_type"]) <= {"no_change", "color", "brightness"}
    with pytest.raises(ValueError, match="No training or validation pairs"):
        learning_curve.main(
            [str(a) for a in ["--base", model, "--data", workspace / "data", "--out", tmp_path / "none"]]
            + ["--designs", "baseline", "--batch_size", "4", "--milestones", "4", "--change_types", "no-such-type"]
        )


def test_global_difference_probe_reports_every_layer_set(workspace, tmp_path):
    from onediff_idc.train import probe_global_difference

    report = probe_global_difference.main(
        ["--base", str(workspace / "tiny-model"), "--data", str(workspace / "data"), "--out", str(tmp_path / "p.json")]
    )
    assert json.loads((tmp_path / "p.json").read_text()) == report
    assert set(report["layer_sets"]) == {"0"}  # the tiny tower has 3 layers: only layer 0 of the sets fits
    assert 0 <= report["layer_sets"]["0"]["exact"] <= 1 and report["validation_pairs"] > 0


def test_alignment_probe_reads_pretrain_deltas_feature_cache(workspace, tmp_path):
    from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
    from onediff_idc.processing.schema import load_diffcap
    from onediff_idc.train import probe_alignment

    model = OneDiffForConditionalGeneration.from_pretrained(workspace / "tiny-model")
    processor = OneDiffProcessor.from_pretrained(workspace / "tiny-model")
    data = load_diffcap(workspace / "data", splits=("train", "validation"))
    vocab, _ = pretrain_delta.change_labels(data["train"]["change"])
    validation, _ = pretrain_delta.known_changes(data["validation"], vocab)  # the rows pretrain_delta caches
    for split, rows in (("train", data["train"]), ("validation", validation)):
        pretrain_delta.cache_features(model, processor, rows, tmp_path / "features" / f"{split}.npy", 4)
    argv = ["--data", str(workspace / "data"), "--features", str(tmp_path / "features")]
    report = probe_alignment.main([*argv, "--out", str(tmp_path / "p.json")])
    assert json.loads((tmp_path / "p.json").read_text()) == report
    assert set(report["feature_sets"]) == {"global", "alignment", "both"}
    assert report["validation_pairs"] == validation["source"].count("photo-edit") > 0
    for scores in report["feature_sets"].values():
        assert 0 <= scores["exact"] <= 1 and scores["by_change_type"]
        assert set(scores["by_change_type"]) <= {*PHOTO_TYPES, "no_change"}  # photo edits only


def test_localisation_probe_scores_each_shift_tolerance_and_layer_set(workspace, tmp_path):
    from modeling_onediff import OneDiffConfig
    from onediff_idc.train import probe_localisation

    argv = ["--base", str(workspace / "tiny-model"), "--data", str(workspace / "data"), "--split", "train"]
    report = probe_localisation.main([*argv, "--top_k", "3", "--out", str(tmp_path / "p.json")])
    assert json.loads((tmp_path / "p.json").read_text()) == report
    delta_layers = ",".join(
        map(str, OneDiffConfig.from_pretrained(workspace / "tiny-model").resolved_delta_feature_layers)
    )
    assert set(report["results"]) == {f"layers {delta_layers}, shift tolerance {r}" for r in (0, 1, 2)}
    assert report["pairs_with_regions"] > 0
    for scores in report["results"].values():
        assert 0 <= scores["pointing_game"] <= scores["top_3_includes_change"] <= 1  # the top patch is in the top 3
        assert 0 <= scores["change_vs_no_change_auroc"] <= 1
        assert 0 <= scores["colour_or_material_vs_no_change_auroc"] <= 1
        assert 0 <= scores["colour_or_material_vs_no_change_auroc_absolute"] <= 1

    # a layer set measures the change on its own layers: the delta layers' set reproduces the default run
    sets = probe_localisation.main(
        [
            *argv,
            "--top_k",
            "3",
            "--layer_sets",
            "0",
            delta_layers,
            "pixels",
            f"{delta_layers},pixels",
            "--shift_tolerances",
            "1",
            "--out",
            str(tmp_path / "s.json"),
        ]
    )["results"]
    assert (
        sets[f"layers {delta_layers}, shift tolerance 1"]
        == report["results"][f"layers {delta_layers}, shift tolerance 1"]
    )
    assert sets["layers 0, shift tolerance 1"]["layers"] == [0]
    # the pixel statistics alone (no tower at all) and as one more layer of the delta layers' set
    pixels, both = sets["layers pixels, shift tolerance 1"], sets[f"layers {delta_layers},pixels, shift tolerance 1"]
    assert pixels["layers"] == ["pixels"] and both["layers"][-1] == "pixels" and pixels != both
    for scores in (pixels, both):  # the recoloured object's peak is among the top 3 whenever it is the top 1
        assert (
            0 <= scores["colour_or_material_pointing_game"] <= scores["colour_or_material_top_3_includes_change"] <= 1
        )


def test_interrupted_feature_caching_continues_from_its_last_save(workspace, tmp_path, monkeypatch):
    from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor
    from onediff_idc.processing.schema import load_diffcap

    model = OneDiffForConditionalGeneration.from_pretrained(workspace / "tiny-model")
    processor = OneDiffProcessor.from_pretrained(workspace / "tiny-model")
    train = load_diffcap(workspace / "data", splits=("train",))["train"]
    straight = np.array(pretrain_delta.cache_features(model, processor, train, tmp_path / "a" / "train.npy", 4))

    class Interrupted:  # the dataset as cache_features reads it, stopping (like a kill) at its fifth batch
        reads = []

        def __len__(self):
            return len(train)

        def select(self, indices):
            return train.select(indices)

        def __getitem__(self, key):
            self.reads.append(key)
            if isinstance(key, slice) and len([r for r in self.reads if isinstance(r, slice)]) == 5:
                raise KeyboardInterrupt
            return train[key]

    target = tmp_path / "b" / "train.npy"
    with pytest.raises(KeyboardInterrupt):
        pretrain_delta.cache_features(model, processor, Interrupted(), target, 4, save_every=2)
    assert not target.exists() and json.loads(target.with_name("train.partial.json").read_text())["rows_done"] == 16
    resumed = Interrupted()
    resumed.reads = [slice(0)] * 10  # no second interruption
    cached = pretrain_delta.cache_features(model, processor, resumed, target, 4, save_every=2)
    assert next(r.start for r in resumed.reads[10:] if isinstance(r, slice)) == 16  # continued, did not start over
    assert np.array_equal(np.asarray(cached), straight)
    assert not target.with_name("train.partial.json").exists()

    # the same rows with a column added (as loading an older folder adds change_regions) reuse the cache ...
    def no_encoding(*args, **kwargs):
        raise AssertionError("features were computed again")

    monkeypatch.setattr(pretrain_delta, "pair_patch_states", no_encoding)
    widened = train.add_column("note", ["x"] * len(train))
    assert np.array_equal(np.asarray(pretrain_delta.cache_features(model, processor, widened, target, 4)), straight)
    # ... other rows do not
    with pytest.raises(AssertionError, match="computed again"):
        pretrain_delta.cache_features(model, processor, train.select(range(1, len(train))), target, 4)


def delta_args(workspace: Path, model: Path, out: Path, *extra: str) -> list[str]:
    args = ["--model_name_or_path", model, "--dataset_path", workspace / "data", "--output_dir", out]
    args += ["--feature_cache_dir", out.parent / "features", "--per_device_train_batch_size", "4"]
    args += ["--learning_rate", "3e-3", "--logging_steps", "1", *extra]
    return [str(a) for a in args]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["pretrain_delta", "pretrain_coupled"])
def test_sigkill_at_random_moments_and_mid_save_resumes_to_the_same_weights(workspace, tmp_path, script):
    if script == "pretrain_delta":
        model = save_tiny_model(tmp_path / "model", num_delta_queries=12)
        args = lambda out, *extra: delta_args(workspace, model, out, "--num_train_epochs", "40", *extra)  # noqa: E731
        save_every = ("--save_steps", "5")
    else:
        args = lambda out, *extra: stage1_args(workspace, out, "--max_steps", "24", *extra)  # noqa: E731
        save_every = ("--save_steps", "3")
    module = {"pretrain_delta": pretrain_delta, "pretrain_coupled": pretrain_coupled}[script]
    straight = module.main(args(tmp_path / "straight", *save_every))

    out, checkpoints = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    rng = np.random.default_rng(0)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(*runner: str) -> subprocess.Popen:
        resume = ("--resume", "latest") if list(checkpoints.glob("checkpoint_*/checkpoint_complete.json")) else ()
        command = [sys.executable, *runner, str(REPO / "train" / f"{script}.py"), *args(out, *save_every, *resume)]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def logged_steps() -> int:
        log = out / "log.jsonl"
        return len(log.read_text().splitlines()) if log.is_file() else 0

    # 1. killed while writing its second checkpoint: that folder stays half-written, without the marker
    proc = start(str(REPO / "tests" / "kill_during_save.py"), "1")
    assert proc.wait(timeout=600) == -signal.SIGKILL, proc.stderr.read()[-2000:]
    assert (checkpoints / "checkpoint_1").is_dir() and not (checkpoints / "checkpoint_1" / COMPLETE_MARKER).exists()
    # 2. killed at random moments of training (resumed from the last complete checkpoint each time)
    killed = 0
    for _ in range(2):
        before, proc = logged_steps(), start()
        while proc.poll() is None and logged_steps() <= before + 1:
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        killed += proc.wait(timeout=600) == -signal.SIGKILL
    assert killed >= 1
    # 3. killed mid-save again, further on; then run to the end
    proc = start(str(REPO / "tests" / "kill_during_save.py"), str(1 + len(list(checkpoints.iterdir())) + 1))
    proc.wait(timeout=600)
    proc = start()
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]

    a, b = (load_file(p / "model.safetensors") for p in (straight, out / "final"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(out / "log.jsonl") == losses(tmp_path / "straight" / "log.jsonl")  # no step logged twice or lost


def test_change_bottleneck_heads_then_phrasing_of_the_true_change(workspace, tmp_path):
    """Delta supervision with `change_bottleneck` turns a checkpoint into the discrete-bottleneck design and trains
    its own heads; `phrase_true_change` then trains only LoRA and the value embeddings, from the true changes,
    without reading a pixel."""
    model = save_tiny_model(tmp_path / "model", num_delta_queries=12)
    args = ["--model_name_or_path", model, "--dataset_path", workspace / "data", "--output_dir", tmp_path / "heads"]
    args += ["--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--num_train_epochs", "6"]
    args += ["--logging_steps", "1", "--change_bottleneck", "true"]
    recipe = tmp_path / "heads.yaml"  # a zoomed design: config overrides (a mapping) come from a recipe
    recipe.write_text("model_config_overrides: {delta_zoom_patches: 4, delta_shift_tolerance: 1}\n")
    args += ["--config", recipe]
    heads = pretrain_delta.main([str(a) for a in args])
    config = json.loads((heads / "config.json").read_text())
    assert config["use_image_tokens"] is False and {"type", "color", "direction"} <= set(config["delta_change_fields"])
    assert (config["delta_zoom_patches"], config["delta_shift_tolerance"]) == (4, 1)
    train_changes = load_diffcap(workspace / "data", splits=("train",))["train"]["change"]
    assert config["delta_change_schema"] == OneDiffForConditionalGeneration.config_class.change_schema(train_changes)
    assert config["delta_change_schema"]["none"] == {} and "new_value" in config["delta_change_schema"]["color"]
    distinct = OneDiffForConditionalGeneration.config_class.change_distinct(train_changes)
    assert config["delta_change_distinct"] == distinct
    assert OneDiffProcessor.from_pretrained(heads).num_delta_tokens == len(config["delta_change_fields"])
    train_losses = losses(tmp_path / "heads" / "log.jsonl")
    assert sum(train_losses[-3:]) < 0.7 * sum(train_losses[:3])
    untouched, trained = load_file(model / "model.safetensors"), load_file(heads / "model.safetensors")
    changed = {k.split(".")[1] for k in trained if k not in untouched or not torch.equal(trained[k], untouched[k])}
    assert changed == {"delta_module", "change_heads"}
    assert not any(k.startswith(("model.image_projector", "model.delta_projector")) for k in trained)

    # the collator phrases each row's true change: labels instead of pixels
    processor = OneDiffProcessor.from_pretrained(heads)
    rows = [row for row in load_diffcap(workspace / "data", splits=("train",))["train"] if row["change"]][:2]
    model_config = OneDiffForConditionalGeneration.config_class.from_pretrained(heads)
    batch = OneDiffCollator(processor, model_config)(rows)
    assert "pixel_values" not in batch
    assert batch["change_labels"].tolist() == [model_config.encode_change(r["change"]) for r in rows]

    # canonical phrasing: every row's target is its change's one wording
    known = load_diffcap(workspace / "data", splits=("train",))["train"].filter(bool, input_columns="change")
    canonical = sft.with_canonical_completions(known)
    assert [parse_caption(c) for c in canonical["completion"]] == [json.loads(c) for c in known["change"]]
    assert canonical["completion"] != known["completion"] and canonical["prompt"] == known["prompt"]
    with pytest.raises(ValueError, match="canonical_phrasing"):
        sft.parse(sft_args(workspace, tmp_path / "x", "--canonical_phrasing", "true"))

    out = tmp_path / "phrasing"
    extra = ["--model_name_or_path", str(heads), "--phrase_true_change", "true", "--max_steps", "4"]
    extra += ["--canonical_phrasing", "true"]
    final = sft.main(sft_args(workspace, out, *extra, "--eval_strategy", "no", "--save_steps", "4"))
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["modules_to_save"]) == {"delta_module", "change_heads"}  # all trained parts ship
    phrased = load_file(final / "model.safetensors")
    moved = {k for k in trained if not torch.equal(trained[k], phrased[k])}
    assert "model.change_heads.value_embeddings.weight" in moved
    assert not any(
        k.startswith(("model.delta_module", "model.vision_tower", "model.change_heads.classifiers")) for k in moved
    )
    assert any(k.startswith("model.language_model.layers") for k in moved)  # LoRA, merged
    pipe = pipeline("image-difference-captioning", model=str(final), trust_remote_code=True)
    assert isinstance(
        pipe({"before": random_image(1), "after": random_image(2)}, max_new_tokens=3)["generated_text"], str
    )


@pytest.mark.parametrize("schema", [False, True], ids=["per-field", "valid-changes"])
def test_no_change_calibration_picks_the_balanced_bias_and_the_model_applies_it(workspace, tmp_path, schema):
    from modeling_onediff import OneDiffConfig
    from onediff_idc.train import calibrate_no_change

    data = load_diffcap(workspace / "data", splits=("train", "validation"))
    fields: dict[str, set] = {}
    for change in [*data["train"]["change"], *data["validation"]["change"]]:
        for name, value in json.loads(change).items() if change else ():
            fields.setdefault(name, set()).add(str(value))
    model_dir = save_tiny_model(
        tmp_path / "model",
        num_delta_queries=len(fields),
        delta_change_fields={name: sorted(values) for name, values in fields.items()},
        use_image_tokens=False,
        **({"delta_change_schema": OneDiffConfig.change_schema(data["train"]["change"])} if schema else {}),
    )
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps({"use_image_tokens": False}))
    argv = ["--model", str(model_dir), "--data", str(workspace / "data"), "--split", "validation", "--batch_size", "4"]
    wide = calibrate_no_change.main([*argv, "--grid", "-1000", "1000", "250", "--out", str(tmp_path / "w.json")])
    assert (wide["curve"][0]["unchanged_said_no_change"], wide["curve"][0]["changed_not_said_no_change"]) == (0, 1)
    assert (wide["curve"][-1]["unchanged_said_no_change"], wide["curve"][-1]["changed_not_said_no_change"]) == (1, 0)
    report = calibrate_no_change.main([*argv, "--out", str(tmp_path / "c.json"), "--apply", str(overrides)])
    assert json.loads((tmp_path / "c.json").read_text()) == report
    joined = calibrate_no_change.main(  # several folders: their splits joined
        [*argv[:4], str(workspace / "data"), *argv[4:], "--out", str(tmp_path / "j.json")]
    )
    assert joined["chosen"]["pairs"] == 2 * report["chosen"]["pairs"]
    curve, chosen = report["curve"], report["chosen"]
    balance = [min(p["unchanged_said_no_change"], p["changed_not_said_no_change"]) for p in curve]
    assert min(chosen["unchanged_said_no_change"], chosen["changed_not_said_no_change"]) == max(balance)
    assert json.loads(overrides.read_text()) == {
        "use_image_tokens": False,
        "delta_no_change_logit_bias": chosen["bias"],
    }
    for point in curve:  # the bias favours "no change": one rate never falls as it grows, the other never rises
        assert point["pairs"] == len(data["validation"]) and point["unchanged_pairs"] == 1
    said = [p["unchanged_said_no_change"] for p in curve]
    kept = [p["changed_not_said_no_change"] for p in curve]
    assert said == sorted(said) and kept == sorted(kept, reverse=True)

    # the model with the chosen bias (its own forward, not the sweep) says "no change" on exactly those pairs
    from modeling_onediff import OneDiffForConditionalGeneration, OneDiffProcessor

    for bias in (chosen["bias"], curve[0]["bias"], curve[-1]["bias"]):
        model = OneDiffForConditionalGeneration.from_pretrained(model_dir, delta_no_change_logit_bias=bias).eval()
        processor = OneDiffProcessor.from_pretrained(model_dir)
        rows = data["validation"]
        scores = calibrate_no_change.pair_scores(model, processor, rows, 5)
        types = model.config.delta_change_fields["type"]
        chosen_classes = model.model.change_heads.choose(tuple(torch.from_numpy(s) for s in scores)).numpy()
        said_none = chosen_classes[:, list(model.config.delta_change_fields).index("type")] == types.index("none")
        unchanged = np.array([json.loads(c)["type"] == "none" for c in rows["change"]])
        point = next(p for p in curve if p["bias"] == bias)
        assert said_none[unchanged].mean() == point["unchanged_said_no_change"]
        assert (~said_none[~unchanged]).mean() == point["changed_not_said_no_change"]

    only_changed = data["validation"].filter(lambda t: t != "no_change", input_columns="change_type")
    config = OneDiffForConditionalGeneration.config_class.from_pretrained(model_dir)
    truth = np.array([config.encode_change(c) for c in only_changed["change"]])
    with pytest.raises(ValueError, match="both unchanged and changed"):
        calibrate_no_change.calibrate([np.zeros((len(truth), n)) for n in (3,) * len(fields)], truth, None, config, [0])


def test_compare_reports_puts_ablations_beside_their_runs(tmp_path, capsys):
    """train/compare_reports.py reads pretrain_delta's report.json (written by its own scoring) per run."""
    fields = ["type", "color"]
    labels = np.array([[0, 1], [0, 2], [1, -100], [1, -100]])  # two colour changes, two of another type
    types = ["color", "color", "move", "move"]

    def write_run(name: str, epochs: list[np.ndarray]) -> Path:
        run = tmp_path / name
        run.mkdir()
        report = {
            "epochs": [
                {"epoch": i + 1, **pretrain_delta.score_fields(p, labels, types, fields)} for i, p in enumerate(epochs)
            ]
        }
        (run / "report.json").write_text(json.dumps(report))
        return run

    wrong_colour = np.array([[0, 1], [0, 0], [1, 0], [1, 3]])  # the second colour change named wrong
    full = write_run("full", [wrong_colour, labels.clip(0)])
    ablated = write_run("ablated", [wrong_colour, wrong_colour])
    summary = compare_reports.main(["--out", str(tmp_path / "docs" / "cmp"), f"full={full}", f"without x={ablated}"])
    assert summary["full"]["exact_by_epoch"] == [0.75, 1.0] and summary["without x"]["exact_by_epoch"] == [0.75, 0.75]
    assert summary["without x"]["by_change_type"] == {"color": 0.5, "move": 1.0}
    assert summary["without x"]["fields"] == {"type": 1.0, "color": 0.5}
    table = (tmp_path / "docs" / "cmp.md").read_text()
    assert "| without x | 75.0, 75.0 | 50.0 | 100.0 |" in table and "color (2)" in table
    assert json.loads((tmp_path / "docs" / "cmp.json").read_text()) == summary
    # an unfinished run, or runs validated on different pairs, are errors, not blank or misleading rows
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(SystemExit, match=r"has .*unfinished finished training"):
        compare_reports.main(["--out", str(tmp_path / "x"), f"full={full}", f"u={tmp_path / 'unfinished'}"])
    labels = labels[:3]
    types = types[:3]
    other = write_run("other", [labels])
    with pytest.raises(SystemExit, match="different numbers of pairs"):
        compare_reports.main(["--out", str(tmp_path / "x"), f"full={full}", f"other={other}"])
