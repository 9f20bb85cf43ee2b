# Evaluates nix/module.nix with nixpkgs' lib alone (no nixpkgs, no builder), for
# tests/unit/test_nix_module.py:
#
#   nix-instantiate --eval --strict --json -E \
#     'import ./nix_module_harness.nix { nixpkgsLib = /path/to/nixpkgs.lib; config = { ... }; }'
#
# Beside the module it loads declarations of the NixOS options the module sets, with
# the types NixOS gives them (so a misspelt option is an error here as on NixOS), and a
# `pkgs` whose builders return inert stand-ins that remember their inputs: the test reads
# the JSON the module rendered from them without building anything.
{
  nixpkgsLib,
  config,
}:

let
  lib = import (nixpkgsLib + "/lib");
  inherit (lib) mkOption types;

  # A stand-in derivation: a string-coercible attrset carrying what it was made from.
  drv =
    name: attrs:
    attrs
    // {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    };

  pkgs = {
    # As pkgs/pkgs-lib/formats.nix defines the JSON format's type.
    formats.json =
      { }:
      {
        type =
          let
            valueType =
              types.nullOr (
                types.oneOf [
                  types.bool
                  types.int
                  types.float
                  types.str
                  types.path
                  (types.attrsOf valueType)
                  (types.listOf valueType)
                ]
              )
              // {
                description = "JSON value";
              };
          in
          valueType;
        generate = name: value: drv name { json = value; };
      };
    writeText = name: text: drv name { inherit text; };
    linkFarm = name: entries: drv name { inherit entries; };
    runCommand = name: env: script: drv name { inherit env script; };
    agent-orchestrator = drv "agent-orchestrator-0.1.0" { meta.mainProgram = "orchestratord"; };
  };

  # nixos/lib/systemd-unit-options.nix: a unit setting; list definitions concatenate.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  commonUnitOptions = {
    description = mkOption {
      type = types.str;
      default = "";
    };
    wantedBy = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    onFailure = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    overrideStrategy = mkOption {
      type = types.enum [
        "asDropinIfExists"
        "asDropin"
      ];
      default = "asDropinIfExists";
    };
  };

  nixosOptions = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.source = mkOption { type = types.path; };
          }
        );
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      environment.variables = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      systemd.packages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = commonUnitOptions // {
              path = mkOption {
                type = types.listOf (types.either types.package types.str);
                default = [ ];
              };
              environment = mkOption {
                type = types.attrsOf (types.nullOr (types.either types.str types.package));
                default = { };
              };
              reloadTriggers = mkOption {
                type = types.listOf unitOption;
                default = [ ];
              };
              restartTriggers = mkOption {
                type = types.listOf unitOption;
                default = [ ];
              };
              serviceConfig = mkOption {
                type = types.attrsOf unitOption;
                default = { };
              };
            };
          }
        );
        default = { };
      };
      systemd.timers = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = commonUnitOptions // {
              timerConfig = mkOption {
                type = types.attrsOf unitOption;
                default = { };
              };
            };
          }
        );
        default = { };
      };
      # nixos/modules/config/users-groups.nix; NixOS itself declares wheel and users.
      users.groups = mkOption {
        type = types.attrsOf (types.attrsOf types.unspecified);
        default = { };
      };
    };
    config.users.groups = {
      wheel = { };
      users = { };
    };
  };

  evaluated = lib.evalModules {
    modules = [
      ../../nix/module.nix
      nixosOptions
      config
    ];
    specialArgs = { inherit pkgs; };
  };
  cfg = evaluated.config;

  # What a stand-in derivation was made from, as JSON.
  describe =
    d:
    if d ? json then
      {
        kind = "json";
        inherit (d) name json;
      }
    else if d ? text then
      {
        kind = "text";
        inherit (d) name text;
      }
    else if d ? entries then
      {
        kind = "linkFarm";
        inherit (d) name;
        entries = map (e: {
          inherit (e) name;
          path = describe e.path;
        }) d.entries;
      }
    else if d ? script then
      {
        kind = "runCommand";
        inherit (d) name script;
        inputs = lib.mapAttrs (_: v: if v ? type then describe v else v) (
          removeAttrs d.env [ "nativeBuildInputs" ]
        );
        nativeBuildInputs = map (p: p.name) d.env.nativeBuildInputs;
      }
    else
      throw "not a stand-in derivation: ${d.name or "?"}";
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
  inherit (cfg) warnings;
  etc = lib.mapAttrs (_: e: describe e.source // { path = "${e.source}"; }) cfg.environment.etc;
  services = cfg.systemd.services;
  timers = cfg.systemd.timers;
  packages = map (p: p.name) cfg.systemd.packages;
  variables = cfg.environment.variables;
  settings = cfg.services.agent-orchestrator.settings;
}
