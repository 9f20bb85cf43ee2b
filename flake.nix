{
  description = "agent-orchestrator: durable workflows of agent skills on NixOS (daemon, CLI, NixOS module)";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems =
        f:
        lib.genAttrs systems (
          system:
          f (
            import nixpkgs {
              inherit system;
              overlays = [ self.overlays.default ];
            }
          )
        );

      # A NixOS VM test (nix/tests/*.nix) with this flake's module on every node.
      vmTest =
        pkgs: file:
        pkgs.testers.runNixOSTest {
          imports = [ file ];
          defaults.imports = [ self.nixosModules.default ];
        };
    in
    {
      overlays.default = final: _prev: {
        agent-orchestrator = final.callPackage ./nix/package.nix { };
      };

      packages = forAllSystems (pkgs: {
        default = pkgs.agent-orchestrator;
        agent-orchestrator = pkgs.agent-orchestrator;
      });

      # The package defaults to one built from the system's own nixpkgs (its Python),
      # so a system that imports this module does not evaluate a second nixpkgs. A
      # cross-built system's build-time checks run a build for the build platform.
      nixosModules.default =
        { lib, pkgs, ... }:
        {
          imports = [ ./nix/module.nix ];
          services.agent-orchestrator = {
            package = lib.mkDefault (pkgs.callPackage ./nix/package.nix { });
            checkPackage = lib.mkIf (!pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform) (
              lib.mkDefault (pkgs.buildPackages.callPackage ./nix/package.nix { })
            );
          };
        };

      checks = forAllSystems (pkgs: {
        # Building the package runs its unit and integration tests (pytestCheckHook).
        package = pkgs.agent-orchestrator;
        vm-deployment = vmTest pkgs ./nix/tests/deployment.nix;
        vm-health-monitoring = vmTest pkgs ./nix/tests/health-monitoring.nix;
        vm-service-startup = vmTest pkgs ./nix/tests/service-startup.nix;
        vm-step-units = vmTest pkgs ./nix/tests/step-units.nix;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            pkgs.agent-orchestrator.devEnv
            self.formatter.${pkgs.stdenv.hostPlatform.system}
          ];
          # tests/unit/test_nix_module.py evaluates nix/module.nix with this lib.
          NIXPKGS_LIB = "${nixpkgs}";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-tree or pkgs.nixfmt-rfc-style);
    };
}
