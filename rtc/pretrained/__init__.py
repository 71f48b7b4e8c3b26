"""Pretrained checkpoints: llama2.c and Hugging Face safetensors in, safetensors out."""
