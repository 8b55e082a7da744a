"""Serving the model over HTTP: a Ray Serve application (deployment.py: /analyze, /classify, /info, batched model
calls across streams). Its client, which never imports ray, is inference/remote.py."""
