"""An example unlearnlab plugin: one method, CF-k (example_forget.cf_k), and its config
(example_forget/conf/method/example_cf_k.yaml). unlearnlab finds both through the entry point in
pyproject.toml; nothing here is listed anywhere in unlearnlab."""
