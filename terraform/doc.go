// Package terraform holds the base infrastructure of servingapp on AWS (the
// .tf files in this directory) and, in its tests, the checks that keep it
// sound: references resolve, variables are declared and used, IAM stays least
// privilege, the controller config matches controller/config, and the images
// build static binaries as the Dockerfiles do. It has no Go API.
package terraform
