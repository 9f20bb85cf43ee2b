# agent-orchestrator: the daemon (orchestratord), its CLI (orchestratorctl) and the
# systemd units that run them. Called from the flake's overlay as
#   pkgs.agent-orchestrator = final.callPackage ./nix/package.nix { };
{
  lib,
  python3Packages,
  gitMinimal,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;

  # python-systemd (journald logging with structured fields) was `systemd` in
  # python3Packages until late 2025 and is `systemd-python` since; accept either so
  # the package also builds against an older pin.
  systemd-python = python3Packages.systemd-python or python3Packages.systemd;

  # pyproject.toml's dependencies and its `journald` extra (tests/unit/test_nix_module.py
  # holds the two lists equal).
  dependencies = with python3Packages; [
    pydantic
    pyyaml
    jinja2
    jsonschema
    aiosqlite
    tenacity
    aiohttp
    sdnotify
    dbus-fast
    prometheus-client
    markupsafe
    referencing
    systemd-python
  ];
  # pyproject.toml's `mcp` extra (`orchestratorctl mcp`, services.agent-orchestrator.mcp),
  # written against the SDK's 2.x API: taken when nixpkgs has a 2.x, else the command
  # says it needs the extra and its tests are skipped.
  mcpDependencies = lib.optionals (
    python3Packages ? mcp && lib.versionAtLeast python3Packages.mcp.version "2"
  ) (with python3Packages; [
    mcp
    uvicorn
  ]);
  # pyproject.toml's `test` extra.
  testDependencies = with python3Packages; [
    pytest
    pytest-asyncio
    pytest-timeout
    pytest-randomly # a random test order, so that no test depends on another
    hypothesis
    pyflakes # the code-review skill's linter, whose findings the pipeline test asserts
  ];
in
python3Packages.buildPythonApplication {
  pname = "agent-orchestrator";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build and the tests read: a change to nix/ or to the docs does not
  # rebuild the package (and re-run its tests).
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../LICENSE # pyproject.toml's license-files
      ../orchestratord
      ../tests
      ../workflows
      ../bench # tests/integration imports its history generator and runs it at tiny sizes
    ];
  };

  build-system = [ python3Packages.setuptools ];
  dependencies = dependencies ++ mcpDependencies;

  # git: an integration test pulls a workflow's skills from a real repository.
  nativeCheckInputs = [
    python3Packages.pytestCheckHook
    gitMinimal
  ]
  ++ testDependencies;

  # The unit and integration layers run in the build sandbox (real SQLite files, real
  # subprocesses, a real HTTP server on 127.0.0.1). The system layer boots a container
  # with systemd-nspawn, which the sandbox cannot do; the VM tests in nix/tests/ cover
  # that ground on NixOS.
  enabledTestPaths = [
    "tests/unit"
    "tests/integration"
  ];
  disabledTestPaths = [ "tests/system" ];

  # The unit files name their programs bare (`ExecStart=orchestratord ...`) so that the
  # same files serve a pip install under /usr/local; systemd needs absolute paths here.
  postInstall = ''
    replacements=()
    for program in $out/bin/*; do
      name=$(basename "$program")
      replacements+=(--replace-quiet "ExecStart=$name " "ExecStart=$out/bin/$name ")
      replacements+=(--replace-quiet "ExecReload=$name " "ExecReload=$out/bin/$name ")
    done
    mkdir -p $out/lib/systemd/system
    for unit in orchestratord/daemon/units/*.service; do
      substitute "$unit" "$out/lib/systemd/system/$(basename "$unit")" "''${replacements[@]}"
    done
    # The example workflows and their command skills (project-import, code-review,
    # webapp-testing), for settings.skill_paths; they need git and python3 on the
    # daemon's path.
    mkdir -p $out/share/agent-orchestrator
    cp -r workflows $out/share/agent-orchestrator/workflows
    # Fail the build if a unit still runs a program without its path.
    if grep -E '^Exec[A-Za-z]*=[^/]' $out/lib/systemd/system/*.service; then
      echo "a unit file above runs a program without an absolute path" >&2
      exit 1
    fi
  '';

  pythonImportsCheck = [ "orchestratord" ];

  passthru = {
    # A Python with every dependency and test dependency: the flake's dev shell.
    devEnv = python3Packages.python.withPackages (_: dependencies ++ testDependencies);
  };

  meta = {
    inherit (pyproject.project) description;
    license = lib.licenses.mit; # pyproject.toml: license = "MIT"
    mainProgram = "orchestratord";
    platforms = lib.platforms.linux;
  }
  # The project's public home, once pyproject.toml names one ([project.urls] Homepage).
  // lib.optionalAttrs (pyproject.project ? urls) { homepage = pyproject.project.urls.Homepage; };
}
