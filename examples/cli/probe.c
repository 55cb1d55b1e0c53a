/* mae probe: being written this session. */
#include "cli.h"

int cmd_probe(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    return cli_usage_error("probe", "not built yet");
}
