// libyaml (Debian's libyaml-dev): the configuration's YAML parser (BrokerApp/Configuration/YAMLNode).
#include <yaml.h>
