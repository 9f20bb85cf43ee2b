# Option types that mirror the workflow and skill format of orchestratord/language/model.py;
# with them, from the files beside: workflow-render.nix (their values back into that
# format, as JSON) and workflow-problems.nix (`problems` below).
#
# Keys keep the file format's spelling (depends_on, continue_on_error, max_delay, ...) so
# that a workflow moves between YAML and Nix by changing syntax only (RFC 42). Types
# check what a single value can get wrong; nix/module.nix turns `problems` below into
# assertions for what spans several values; the package's own validator
# (`orchestratorctl validate`) then checks the rendered file at build time: names,
# dependencies, cycles, expressions, params against the actions' schemas.
{ lib, jsonType }:

let
  inherit (lib) mkOption types;

  optional =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };

  # model.py: Name = ^[A-Za-z_][A-Za-z0-9_-]*$, at most 64 characters.
  namePattern = "[A-Za-z_][A-Za-z0-9_-]{0,63}";
  name = types.strMatching namePattern // {
    description = "name (letters, digits, `_` and `-`; not starting with a digit or `-`)";
  };

  # model.py parse_duration: seconds, or "500ms", "30s", "1h30m".
  duration =
    types.either types.numbers.nonnegative (
      types.strMatching "[[:space:]]*([0-9]+(\\.[0-9]+)?[[:space:]]*(ms|s|m|h|d)[[:space:]]*)+"
    )
    // {
      description = ''duration (seconds, or a string such as "500ms", "30s", "1h30m")'';
    };

  retry = types.submodule {
    options = {
      attempts = mkOption {
        type = types.ints.between 1 100;
        default = 1;
        description = "Total attempts, the first included.";
      };
      backoff = mkOption {
        type = types.enum [
          "fixed"
          "linear"
          "exponential"
        ];
        default = "exponential";
        description = "How the delay between attempts grows.";
      };
      initial = mkOption {
        type = duration;
        default = 1;
        description = "Delay before the first retry.";
      };
      factor = mkOption {
        type = types.numbers.between 1 10;
        default = 2;
        description = "Growth of exponential delays.";
      };
      max_delay = mkOption {
        type = duration;
        default = 300;
        description = "Upper bound of any one delay.";
      };
      jitter = mkOption {
        type = duration;
        default = 0;
        description = "Up to this many random seconds added to each delay.";
      };
      retry_on = mkOption {
        type = types.listOf (
          types.enum [
            "retryable"
            "timeout"
            "failed"
          ]
        );
        default = [
          "retryable"
          "timeout"
        ];
        description = ''
          Which failures are retried: `retryable` (exit status 75, HTTP 5xx, connection
          errors), `timeout`, or `failed` (any failure).
        '';
      };
    };
  };

  rollback = types.submodule {
    options = {
      action = mkOption {
        type = name;
        description = "The compensating action.";
      };
      skill = optional name "Skill of the compensating action; defaults to the step's own.";
      params = optional (types.attrsOf jsonType) ''
        Params of the compensating action; default: the params the step ran with.
        May use `{{ }}` templates.
      '';
    };
  };

  http = types.submodule {
    options = {
      url = mkOption {
        type = types.strMatching "https?://.+";
        example = "http://127.0.0.1:8080/hook";
        description = "Where the action's params are sent as JSON.";
      };
      method = mkOption {
        type = types.enum [
          "GET"
          "POST"
          "PUT"
          "PATCH"
          "DELETE"
        ];
        default = "POST";
        description = "HTTP method.";
      };
      headers = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = ''
          Request headers. They are stored in the world-readable Nix store: no tokens
          here (see {option}`services.agent-orchestrator.secrets`).
        '';
      };
    };
  };

  action = types.submodule {
    options = {
      description = optional types.str "What the action does.";
      command = optional (types.nonEmptyListOf types.str) ''
        argv of the program to run (never through a shell). It reads the params as JSON
        on stdin and prints its result as JSON on stdout; exit status 0 is success, 75 a
        failure worth retrying, anything else a failure. It runs in the skill's directory.
      '';
      http = optional http "Send the params to an HTTP endpoint instead of running a command.";
      params = optional (types.attrsOf jsonType) "JSON Schema the params must satisfy.";
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Extra environment variables for the command.";
      };
      timeout = optional duration "Default timeout of steps running this action.";
      retry = optional retry "Default retry policy of steps running this action.";
      rollback = optional rollback "Default compensating action of steps running this action.";
    };
  };

  skill = types.submodule {
    options = {
      description = mkOption {
        type = types.str;
        default = "";
        description = "What the skill is for (the SKILL.md description).";
      };
      version = optional types.str "Version of the skill.";
      concurrency = optional (types.ints.between 1 1000) "At most this many of its steps at once.";
      actions = mkOption {
        type = types.attrsOf action;
        description = "What the skill can do, by action name.";
      };
    };
  };

  # A step's options. A parallel group is an item of the step list that sets `parallel`
  # (and at most `id` and `depends_on` besides); one submodule for both keeps the list
  # type simple, and `problems` below reports a group that sets step options.
  stepOptions = {
    id = optional name "Step id; defaults to the skill's name.";
    skill = optional name "The skill whose action this step runs; or choose it with `route` or `capability`.";
    action = optional name "The action of `skill` to run.";
    route = optional types.str ''
      A request in words ("check that the host is healthy"), routed to one skill's action
      when the workflow is validated, instead of `skill` and `action`. The run records it.
    '';
    capability = optional types.str ''
      A capability (health.check) that exactly one action declares, instead of `skill` and
      `action`; resolved when the workflow is validated.
    '';
    description = optional types.str "What this step is for.";
    params = mkOption {
      type = types.attrsOf jsonType;
      default = { };
      example = {
        packages = [
          "vim"
          "git"
        ];
        summary = "{{ steps.check.result.summary }}";
      };
      description = "Params of the action; strings may use `{{ params.x }}` and `{{ steps.<id>.result.<path> }}`.";
    };
    depends_on = optional (types.listOf types.str) ''
      Step ids or skill names this step waits for. Absent: the item before it.
      `[ ]`: nothing.
    '';
    # `when = true` as YAML's `when: true`: a constant expression all the same.
    when = optional (types.coercedTo types.bool lib.boolToString types.str) "Run only if this expression over earlier results is true.";
    trigger_rule = mkOption {
      type = types.enum [
        "all_success"
        "all_done"
        "none_failed"
        "one_failed"
      ];
      default = "all_success";
      description = "What the dependencies must have ended as for this step to run.";
    };
    retry = optional retry "Retry policy of this step.";
    timeout = optional duration "Time limit of one attempt.";
    continue_on_error = mkOption {
      type = types.bool;
      default = false;
      description = "A failure of this step does not fail the workflow.";
    };
    rollback = optional rollback "Compensating action, run when the workflow rolls back.";
  };

  step = types.submodule { options = stepOptions; };

  item = types.submodule {
    options = stepOptions // {
      parallel = optional (types.nonEmptyListOf step) ''
        Makes this item a group whose member steps run concurrently.
      '';
    };
  };

  param = types.submodule {
    options = {
      default = mkOption {
        type = jsonType;
        default = null;
        description = "Value when a run does not give one.";
      };
      required = mkOption {
        type = types.bool;
        default = false;
        description = "A run must give this param.";
      };
      type = optional (types.enum [
        "string"
        "integer"
        "number"
        "boolean"
        "array"
        "object"
      ]) "JSON type the value must have.";
      description = optional types.str "What the param means.";
      secret = mkOption {
        type = types.bool;
        default = false;
        description = "Keep the value out of logs and reports.";
      };
    };
  };

  # Options of services.agent-orchestrator.workflows.<name>. The attribute name is the
  # workflow's name: `systemctl start orchestrator@<name>` runs it.
  workflow = types.submodule {
    options = {
      description = optional types.str "What the workflow does.";
      params = mkOption {
        # As in the file format, a value that is not an attribute set is the default.
        type = types.attrsOf (
          types.coercedTo (types.addCheck jsonType (v: !builtins.isAttrs v)) (v: {
            default = v;
          }) param
        );
        default = { };
        example = {
          packages = [ "vim" ];
          min_free.default = 0.05;
        };
        description = ''
          Parameters a run may set (`orchestratorctl run NAME -p key=value`). A value
          that is not an attribute set is shorthand for `{ default = value; }`.
        '';
      };
      concurrency = mkOption {
        type = types.ints.between 1 10000;
        default = 8;
        description = "At most this many steps at once.";
      };
      timeout = optional duration "Time limit of a whole run.";
      on_failure = mkOption {
        type = types.enum [
          "fail"
          "rollback"
        ];
        default = "fail";
        description = "`rollback` runs the compensations of succeeded steps when a run fails.";
      };
      outputs = mkOption {
        type = types.attrsOf jsonType;
        default = { };
        description = "The run's result, usually templates over step results.";
      };
      steps = mkOption {
        type = types.nonEmptyListOf item;
        description = "Steps and parallel groups, in order.";
      };
      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = [ ];
        example = "daily";
        description = ''
          When to run the workflow, in {manpage}`systemd.time(7)` calendar event syntax.
          Creates `orchestrator@<name>.timer` (Persistent=: a run missed while the machine
          was off starts at boot). Each event is checked with `systemd-analyze calendar`
          while the system is built.
        '';
      };
      timerConfig = mkOption {
        type = types.attrsOf (
          types.oneOf [
            types.str
            types.int
            types.bool
            (types.listOf types.str)
          ]
        );
        default = { };
        example = {
          RandomizedDelaySec = "1h";
          Persistent = false;
        };
        description = ''
          More of the timer's [Timer] section ({manpage}`systemd.timer(5)`), over the
          module's `OnCalendar=` (startAt), `Unit=` and `Persistent=true`.
        '';
      };
    };
  };
in
{
  inherit
    name
    namePattern
    duration
    skill
    workflow
    ;

  problems = import ./workflow-problems.nix { inherit lib namePattern stepOptions; };
}
// import ./workflow-render.nix { inherit lib; }
