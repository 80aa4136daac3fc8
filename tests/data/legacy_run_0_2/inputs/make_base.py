"""Write the tiny base model of the legacy-run fixture: conftest's build_tiny_model("llama") (seed 0) with the
ChatML tokenizer, saved like the tiny_model_dir fixture does."""
import sys

sys.path.insert(0, "/work/wt/legacy/tests")
from conftest import build_chatml_tokenizer, build_tiny_model

out = sys.argv[1]
tokenizer = build_chatml_tokenizer()
model = build_tiny_model("llama")
model.generation_config.eos_token_id = tokenizer.eos_token_id
model.generation_config.pad_token_id = tokenizer.pad_token_id
model.save_pretrained(out)
tokenizer.save_pretrained(out)
