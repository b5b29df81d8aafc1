"""The Label Studio adapter: the only package that knows Label Studio's JSON."""
