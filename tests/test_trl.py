"""TRL's SFTTrainer trains OneDiff as is, and its checkpoints load with the pipeline (remote code included)."""

from datasets import Dataset, Features, Image, List, Value
from transformers import pipeline
from trl import SFTConfig, SFTTrainer

from tiny import random_image, tiny_model_and_processor


def test_sft_trainer_steps_and_checkpoint_loads_with_the_pipeline(tmp_path):
    model, processor = tiny_model_and_processor("siglip-qwen2")
    rows = {
        "images": [[random_image(2 * i), random_image(2 * i + 1)] for i in range(4)],
        "prompt": ["What changed?", "Describe the difference.", "What changed?", "Changes?"],
        "completion": ["the red cube moved.", "nothing changed.", "a sphere was added.", "it got darker."],
    }
    features = Features({"images": List(Image()), "prompt": Value("string"), "completion": Value("string")})
    dataset = Dataset.from_dict(rows, features=features)
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_length=None,
        per_device_train_batch_size=2,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_steps=2,
        report_to="none",
        use_cpu=True,
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)

    checkpoint = tmp_path / "sft" / "checkpoint-2"
    assert (checkpoint / "pipeline_onediff.py").is_file()  # shipped by modeling_onediff.py's import
    pipe = pipeline("image-difference-captioning", model=str(checkpoint), trust_remote_code=True)
    result = pipe({"before": random_image(0), "after": random_image(1)}, max_new_tokens=4)
    assert isinstance(result["generated_text"], str)
