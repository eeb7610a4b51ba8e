"""Online scoring at a silo (docs/serving.md): the label holder's scorer and endpoints, a passive
silo's answers under its policy, and the Serve stream that carries both."""
