"""An example unlearnlab plugin: one method, prune-then-fine-tune (example_forget.omp_finetune;
Jia et al. 2023), and its config (example_forget/conf/method/omp_finetune.yaml). unlearnlab finds
both through the entry point in pyproject.toml; nothing here is listed anywhere in unlearnlab."""
