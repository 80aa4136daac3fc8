"""chatfreeze: freeze-tune a pretrained chat model into a customer-support assistant."""
