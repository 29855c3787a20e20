"""The serving gateway (`baton serve`): a model's versions by alias, over HTTP."""
