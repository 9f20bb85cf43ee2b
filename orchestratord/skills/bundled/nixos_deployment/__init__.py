"""nixos-deployment: write a NixOS module of packages and services, build and switch it."""
