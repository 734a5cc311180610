"""unlearnlab's Hydra plugin: installed unlearnlab plugins' conf/ folders on Hydra's config search path."""
