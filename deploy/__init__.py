"""Running Proxima: the command line, the local launcher, service checks, manifests."""
