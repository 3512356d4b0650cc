"""Lab lifecycle: build a TopologyPlan into namespaces, change it live, tear it down."""
